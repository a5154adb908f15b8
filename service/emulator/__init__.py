"""A faithful, seeded Strava API emulator for tests, demos and benchmarks.

Shapes follow the real recordings in tests/cassettes/; behaviours follow docs/strava.md
(cited by section in the modules).

    from service.emulator import Emulator, EmulatorConfig, EmulatorServer

    emulator = Emulator(EmulatorConfig(seed=7))
    with EmulatorServer(emulator) as server:
        ...  # STRAVA_API_URL=server.api_url, STRAVA_OAUTH_URL=server.oauth_url
"""

from service.emulator.config import EmulatorConfig, RateLimits
from service.emulator.delivery import DeliveryAttempt
from service.emulator.emulator import Emulator, Fault
from service.emulator.ratelimits import Usage
from service.emulator.server import BackgroundServer, EmulatorServer, run

__all__ = [
    "BackgroundServer",
    "DeliveryAttempt",
    "Emulator",
    "EmulatorConfig",
    "EmulatorServer",
    "Fault",
    "RateLimits",
    "Usage",
    "run",
]
