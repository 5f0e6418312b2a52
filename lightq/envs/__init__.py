"""Environment factory: gymnasium ids to seeded vector envs with an explicit autoreset mode."""

from lightq.envs.factory import (
    EnvConfig,
    UnsupportedSpaceError,
    check_spaces,
    env_seeds,
    make_env,
    make_vec_env,
)

__all__ = ["EnvConfig", "UnsupportedSpaceError", "check_spaces", "env_seeds", "make_env", "make_vec_env"]
