"""Compute anywhere: run a kernel in-process or on the service, whichever finishes sooner.

from veraltheim.client.compute import Dispatcher
output, decision = await Dispatcher(Runtime(), socket).run("image.blur", rgba, params)
"""

from veraltheim.client.compute.cost_model import CostModel
from veraltheim.client.compute.decision import Decision
from veraltheim.client.compute.dispatcher import Dispatcher
from veraltheim.client.compute.errors import RemoteError, RemoteUnavailable

__all__ = ["CostModel", "Decision", "Dispatcher", "RemoteError", "RemoteUnavailable"]
