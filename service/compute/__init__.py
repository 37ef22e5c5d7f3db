"""The service's compute: a worker-process pool behind the `compute:<pool>` channel.

`service.compute.channel.ComputeChannel` and `service.compute.component.ComputeComponent` are
imported from their modules, so worker processes (which import this package) stay light.
"""
