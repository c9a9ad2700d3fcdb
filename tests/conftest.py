import os

from hypothesis import HealthCheck, settings

# CI or a long local run can ask for more examples: ZIP2ZIP_HYPOTHESIS_EXAMPLES=2000 pytest
settings.register_profile(
    "zip2zip",
    max_examples=int(os.environ.get("ZIP2ZIP_HYPOTHESIS_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("zip2zip")
