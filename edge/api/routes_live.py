"""The live WebSocket ``/api/live`` (protocol in ``edge.api.live``). The token and the
Origin are checked by ``AccessGuard`` before the handshake is accepted."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from .state import State

router = APIRouter()


@router.websocket("/api/live")
async def live(websocket: WebSocket, state: State) -> None:
    await state.hub.serve(websocket)
