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

# The same for the collaboration rooms' WebSocket (jupyter-collaboration),
# where each confirmation of a notebook change is a small message too.
try:
    from jupyter_server_ydoc.handlers import YDocWebSocketHandler
except ImportError:  # no real-time collaboration in this environment
    YDocWebSocketHandler = None

if YDocWebSocketHandler is not None and not getattr(
    YDocWebSocketHandler, "_interp_exec_nodelay", False
):
    _ydoc_open = YDocWebSocketHandler.open

    async def _ydoc_open_nodelay(self, *args, **kwargs):
        self.set_nodelay(True)
        return await _ydoc_open(self, *args, **kwargs)

    YDocWebSocketHandler.open = _ydoc_open_nodelay
    YDocWebSocketHandler._interp_exec_nodelay = True

c = get_config()  # noqa: F821 (provided by the config loader)
c.ServerApp.open_browser = False
