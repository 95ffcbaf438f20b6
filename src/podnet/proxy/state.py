"""The request/response cycle as a state machine over two sides.

A connection has two sides, the CLIENT (sends requests) and the SERVER (sends
responses); whichever one we are, both are tracked, because what we may send
depends on what the peer has sent. Each event a side sends moves that side
along :data:`TRANSITIONS`; :data:`CROSS_EFFECTS` moves the other side when it
is implied (a request puts the server in SEND_RESPONSE). Three rules, applied
by :meth:`CycleState._settle`, finish the step:

* a side that proposed a protocol switch (Upgrade, CONNECT) and is DONE waits
  in MIGHT_SWITCH: its next bytes are not HTTP unless the server declines;
  a final non-switching response declines (back to DONE), a switching one
  (101, or 2xx to CONNECT) moves both sides to SWITCHED;
* when the connection cannot persist (either message said so, a side closed
  or failed), a side that is DONE moves to MUST_CLOSE, and so does an IDLE
  client whose server has left IDLE without a request -- it answered
  unprompted (a 408, or the 400 for a head it could not parse) or is gone;
* :meth:`CycleState.start_next_cycle` is explicit: both sides DONE -> IDLE.

ERROR is entered from any state when a side breaks the protocol.

::

    CLIENT  IDLE --Request--> SEND_BODY --EndOfMessage--> DONE --(switch proposed)--> MIGHT_SWITCH
    SERVER  IDLE --(peer's Request)--> SEND_RESPONSE --1xx--> SEND_RESPONSE
                                       SEND_RESPONSE --final--> SEND_BODY --EndOfMessage--> DONE
                                       SEND_RESPONSE --101 / 2xx to CONNECT--> SWITCHED
"""

from __future__ import annotations

import enum

from podnet.proxy.errors import LocalProtocolError

__all__ = [
    "ANSWERS_PROPOSAL",
    "CROSS_EFFECTS",
    "TRANSITIONS",
    "CycleState",
    "Kind",
    "Role",
    "State",
]


class Role(enum.StrEnum):
    """Which side of the connection: the one sending requests or responses."""

    CLIENT = "client"
    SERVER = "server"


class State(enum.StrEnum):
    """Where one side is in the current request/response cycle."""

    IDLE = "idle"
    SEND_RESPONSE = "send-response"
    SEND_BODY = "send-body"
    DONE = "done"
    MUST_CLOSE = "must-close"
    CLOSED = "closed"
    MIGHT_SWITCH = "might-switch"
    SWITCHED = "switched"
    ERROR = "error"


class Kind(enum.StrEnum):
    """What a side sent, as far as the state machine cares."""

    REQUEST = "request"
    INTERIM = "interim"  # 1xx other than 101
    RESPONSE = "response"  # final, not switching
    SWITCH = "switch"  # 101, or 2xx to CONNECT
    DATA = "data"
    END = "end"
    CLOSED = "closed"


_S, _K = State, Kind
_CLOSABLE = (_S.IDLE, _S.DONE, _S.MUST_CLOSE, _S.MIGHT_SWITCH)

#: (state, kind) -> next state, for the side that sent the event.
TRANSITIONS: dict[Role, dict[tuple[State, Kind], State]] = {
    Role.CLIENT: {
        (_S.IDLE, _K.REQUEST): _S.SEND_BODY,
        (_S.SEND_BODY, _K.DATA): _S.SEND_BODY,
        (_S.SEND_BODY, _K.END): _S.DONE,
        **{(state, _K.CLOSED): _S.CLOSED for state in _CLOSABLE},
    },
    Role.SERVER: {
        (_S.IDLE, _K.RESPONSE): _S.SEND_BODY,  # e.g. 408 or 400 before any request
        (_S.SEND_RESPONSE, _K.INTERIM): _S.SEND_RESPONSE,
        (_S.SEND_RESPONSE, _K.RESPONSE): _S.SEND_BODY,
        (_S.SEND_RESPONSE, _K.SWITCH): _S.SWITCHED,
        (_S.SEND_BODY, _K.DATA): _S.SEND_BODY,
        (_S.SEND_BODY, _K.END): _S.DONE,
        **{(state, _K.CLOSED): _S.CLOSED for state in _CLOSABLE},
    },
}

#: (sender, kind) -> {other side's state: its next state}.
CROSS_EFFECTS: dict[tuple[Role, Kind], dict[State, State]] = {
    (Role.CLIENT, _K.REQUEST): {_S.IDLE: _S.SEND_RESPONSE},
    (Role.SERVER, _K.SWITCH): {_S.MIGHT_SWITCH: _S.SWITCHED},
    (Role.SERVER, _K.RESPONSE): {_S.MIGHT_SWITCH: _S.DONE},
}

#: Server events that answer a switch proposal (accepting or declining it).
ANSWERS_PROPOSAL = frozenset({(Role.SERVER, _K.RESPONSE), (Role.SERVER, _K.SWITCH)})

_OTHER = {Role.CLIENT: Role.SERVER, Role.SERVER: Role.CLIENT}
_Rule = tuple[dict[State, State], dict[State, State], bool]


def _compile() -> dict[tuple[Role, Kind], _Rule]:
    """The tables above regrouped by (sender, kind), so one lookup serves an event."""
    rules: dict[tuple[Role, Kind], _Rule] = {}
    for role, table in TRANSITIONS.items():
        for (state, kind), new_state in table.items():
            cross = CROSS_EFFECTS.get((role, kind), {})
            rule = rules.setdefault((role, kind), ({}, cross, (role, kind) in ANSWERS_PROPOSAL))
            rule[0][state] = new_state
    return rules


_RULES = _compile()
_NO_RULE: _Rule = ({}, {}, False)


class CycleState:
    """Both sides' states, the keep-alive flag and a pending switch proposal."""

    __slots__ = ("keep_alive", "states", "switch_proposed")

    def __init__(self) -> None:
        self.states: dict[Role, State] = {Role.CLIENT: _S.IDLE, Role.SERVER: _S.IDLE}
        self.keep_alive = True
        self.switch_proposed = False

    def process(self, role: Role, kind: Kind) -> None:
        """Move ``role`` for an event of ``kind`` it sent.

        Raises:
            LocalProtocolError: the event is not allowed in this state (the
                connection re-raises it as a remote error when the peer sent it).
        """
        moves, cross, answers_proposal = _RULES.get((role, kind), _NO_RULE)
        states = self.states
        state = states[role]
        new_state = moves.get(state)
        if new_state is None:
            raise LocalProtocolError(f"{role} cannot send {kind} in state {state}")
        states[role] = new_state
        if cross:
            other = _OTHER[role]
            states[other] = cross.get(states[other], states[other])
        if kind is _K.CLOSED:
            self.keep_alive = False
        if answers_proposal:
            self.switch_proposed = False
        if self.switch_proposed or not self.keep_alive:
            self._settle()

    def propose_switch(self) -> None:
        """The client's request asks to switch protocols (Upgrade or CONNECT)."""
        self.switch_proposed = True

    def disable_keep_alive(self) -> None:
        self.keep_alive = False
        self._settle()

    def fail(self, role: Role) -> None:
        """``role`` broke the protocol; nothing it sends can be trusted any more."""
        self.states[role] = _S.ERROR
        self.disable_keep_alive()

    def start_next_cycle(self) -> None:
        """Both sides DONE -> IDLE, for the next request on a persistent connection.

        Raises:
            LocalProtocolError: the cycle is not over, or the connection cannot persist.
        """
        if set(self.states.values()) != {_S.DONE}:
            raise LocalProtocolError(f"cycle not reusable in states {self.describe()}")
        self.states = {Role.CLIENT: _S.IDLE, Role.SERVER: _S.IDLE}
        self.switch_proposed = False

    def _settle(self) -> None:
        states = self.states
        if self.switch_proposed and states[Role.CLIENT] is _S.DONE:
            states[Role.CLIENT] = _S.MIGHT_SWITCH
        if not self.keep_alive:
            for role, state in states.items():
                if state is _S.DONE:
                    states[role] = _S.MUST_CLOSE
        if states[Role.CLIENT] is _S.IDLE and states[Role.SERVER] is not _S.IDLE:
            states[Role.CLIENT] = _S.MUST_CLOSE

    def describe(self) -> str:
        """``client=<state>, server=<state>``, for messages."""
        return ", ".join(f"{role}={state}" for role, state in self.states.items())
