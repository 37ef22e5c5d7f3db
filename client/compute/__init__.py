"""Compute anywhere: run a kernel in-process or on the service, whichever finishes sooner.

from veraltheim.client.compute.dispatcher import Dispatcher
output, decision = await Dispatcher(Runtime(), socket).run("image.blur", rgba, params)

The package imports none of its modules: the app's first frame needs `routes` alone, not the
kernel runtime behind `dispatcher` (bench/ui.py, first_frame_ms).
"""
