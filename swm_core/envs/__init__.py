"""Native swm environments, registered with Gymnasium as ``swm/<Name>-v1``."""

import warnings

import gymnasium as gym

ENV_IDS = ("swm/PushT-v1", "swm/TwoRoom-v1", "swm/TwoRoomDiscrete-v1", "swm/TwoRoomMultiDiscrete-v1",
           "swm/Pendulum-v1", "swm/CartPole-v1", "swm/MountainCar-v1",
           "swm/Acrobot-v1", "swm/Reacher-v1", "swm/Cube-v1")
# discrete-action variants plan with a world model of their base env (same dynamics, same frames)
BASE_ENV = {"swm/TwoRoomDiscrete-v1": "swm/TwoRoom-v1", "swm/TwoRoomMultiDiscrete-v1": "swm/TwoRoom-v1"}


def same_dynamics(env_a: str, env_b: str) -> bool:
    """Whether two env ids share states, frames and dynamics (an env and its discrete-action variants): data and
    world models of one serve the other."""
    return BASE_ENV.get(env_a, env_a) == BASE_ENV.get(env_b, env_b)


for _id, _entry in (
    ("swm/PushT-v1", "swm_core.envs.pusht:PushTEnv"),
    ("swm/TwoRoom-v1", "swm_core.envs.two_room:TwoRoomEnv"),
    ("swm/TwoRoomDiscrete-v1", "swm_core.envs.two_room:TwoRoomDiscreteEnv"),
    ("swm/TwoRoomMultiDiscrete-v1", "swm_core.envs.two_room:TwoRoomMultiDiscreteEnv"),
    ("swm/Pendulum-v1", "swm_core.envs.pendulum:PendulumEnv"),
    ("swm/CartPole-v1", "swm_core.envs.cartpole:CartPoleEnv"),
    ("swm/MountainCar-v1", "swm_core.envs.mountain_car:MountainCarEnv"),
    ("swm/Acrobot-v1", "swm_core.envs.acrobot:AcrobotEnv"),
    ("swm/Reacher-v1", "swm_core.envs.reacher:ReacherEnv"),  # needs the mujoco extra, imported only when made
    ("swm/Cube-v1", "swm_core.envs.cube:CubeEnv"),  # needs the mujoco extra (with ogbench), imported only when made
):
    _old = gym.registry.get(_id)
    if _old is not None and _old.entry_point != _entry:
        # the stable-worldmodel package registers envs under the same ids; swm_core's own take precedence
        warnings.warn(f"{_id} was registered by {_old.entry_point}; swm_core re-registers it as {_entry}", stacklevel=2)
        del gym.registry[_id]
    if _id not in gym.registry:
        gym.register(id=_id, entry_point=_entry)
