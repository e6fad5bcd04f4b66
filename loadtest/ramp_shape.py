"""The ``ramp`` scenario's load shape: user counts doubling in equal steps.

Kept out of ``locustfile.py`` on purpose: Locust applies any LoadTestShape
found in its locustfiles, so a shape there would take over every run and
the web UI. Add it to a run by naming both files::

    locust -f loadtest/locustfile.py,loadtest/ramp_shape.py --host ... \\
        --scatter-ramp-users 1,2,4,8,16 --scatter-ramp-step-seconds 10

Each step holds its user count for the step time (users are all started at
the beginning of the step), then the run ends. The runner (``scatter bench
ramp``) cuts the tally into steps by the user count recorded each second.
"""

from typing import Any

from locust import LoadTestShape, events

DEFAULT_USERS = "1,2,4,8,16"
DEFAULT_STEP_SECONDS = 10.0


def _add_options(parser: Any) -> None:
    parser.add_argument("--scatter-ramp-users", default=DEFAULT_USERS, help="user count of each step, comma-separated")
    parser.add_argument(
        "--scatter-ramp-step-seconds", type=float, default=DEFAULT_STEP_SECONDS, help="length of a step"
    )


_hook: Any = events.init_command_line_parser  # locust's add_listener is untyped: not a decorator here
_hook.add_listener(_add_options)


class DoublingSteps(LoadTestShape):
    def tick(self) -> tuple[int, float] | None:
        options = self.runner.environment.parsed_options if self.runner else None
        users = [int(u) for u in str(getattr(options, "scatter_ramp_users", DEFAULT_USERS)).split(",") if u]
        step = float(getattr(options, "scatter_ramp_step_seconds", DEFAULT_STEP_SECONDS))
        index = int(float(self.get_run_time()) // step)  # type: ignore[no-untyped-call]  # untyped in locust
        if index >= len(users):
            return None
        # Spawn rate = the step's whole increase per second: the new users start at once.
        return users[index], float(max(users[index], 1))
