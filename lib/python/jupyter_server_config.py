# Jupyter Server config written by interp-exec for the servers it starts, and
# printed by `interp-exec server config` for whoever starts one in stage 1.
#
# Turns Nagle's algorithm off on kernel WebSockets. Stock Jupyter Server
# leaves it on, so every small kernel message waits for the client's delayed
# ACK: a trivial execute round trip costs ~45 ms instead of ~5 ms.
from jupyter_server.services.kernels.websocket import KernelWebsocketHandler

_open = KernelWebsocketHandler.open


async def _open_nodelay(self, *args, **kwargs):
    self.set_nodelay(True)
    return await _open(self, *args, **kwargs)


if not getattr(KernelWebsocketHandler, "_interp_exec_nodelay", False):
    KernelWebsocketHandler.open = _open_nodelay
    KernelWebsocketHandler._interp_exec_nodelay = True

c = get_config()  # noqa: F821 (provided by the config loader)
c.ServerApp.open_browser = False
