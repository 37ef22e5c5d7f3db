import os

# Every test runs without a screen; set before anything imports Qt.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest

from tests.support.service import ServiceProcess, running_service


@pytest.fixture
def service_factory(tmp_path_factory):
    """Start services: `service_factory("--no-auth")`; each is stopped at the end of the test."""
    stack = []

    def start(*args: str, env: dict[str, str] | None = None, data_dir=None) -> ServiceProcess:
        cm = running_service(data_dir or tmp_path_factory.mktemp("service"), *args, env=env)
        stack.append(cm)
        return cm.__enter__()

    yield start
    while stack:
        stack.pop().__exit__(None, None, None)


@pytest.fixture
def service(service_factory) -> ServiceProcess:
    """A running service with auth on (tests sign tokens with `service.token(user)`)."""
    return service_factory()


@pytest.fixture(scope="session")
def runtime():
    """One wasm Runtime for the tests that only run kernels (it is thread-safe)."""
    from wasm import Runtime

    return Runtime()
