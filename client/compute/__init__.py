"""Compute anywhere: run a kernel in-process or on the service, whichever finishes sooner.

from client.compute import Dispatcher
output, decision = await Dispatcher(Runtime(), socket).run("image.blur", rgba, params)
"""

from client.compute.cost_model import CostModel
from client.compute.decision import Decision
from client.compute.dispatcher import Dispatcher
from client.compute.errors import RemoteError, RemoteUnavailable

__all__ = ["CostModel", "Decision", "Dispatcher", "RemoteError", "RemoteUnavailable"]
