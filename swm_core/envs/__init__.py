"""Native swm environments, registered with Gymnasium as ``swm/<Name>-v1``."""

import gymnasium as gym

ENV_IDS = ("swm/PushT-v1", "swm/TwoRoom-v1", "swm/TwoRoomDiscrete-v1")

for _id, _entry in (
    ("swm/PushT-v1", "swm_core.envs.pusht:PushTEnv"),
    ("swm/TwoRoom-v1", "swm_core.envs.two_room:TwoRoomEnv"),
    ("swm/TwoRoomDiscrete-v1", "swm_core.envs.two_room:TwoRoomDiscreteEnv"),
):
    if _id not in gym.registry:
        gym.register(id=_id, entry_point=_entry)
