"""podnet's DNS: a zone of pod and service names, answered over UDP and TCP.

* :mod:`podnet.dns.records` builds an immutable :class:`Zone` from podnet's state;
* :mod:`podnet.dns.answer` decides the answer to a query (pure);
* :mod:`podnet.dns.wire` turns bytes into replies within size limits (pure);
* :mod:`podnet.dns.forward` asks upstream servers for other names;
* :mod:`podnet.dns.server` serves it all: :class:`DnsServer`.
"""

from podnet.dns.answer import Answer, Forward, Reply, answer
from podnet.dns.handler import Counters, Limits
from podnet.dns.records import DEFAULT_DOMAIN, DEFAULT_TTL, Zone, build_zone
from podnet.dns.server import DnsServer
from podnet.dns.wire import respond

__all__ = [
    "DEFAULT_DOMAIN",
    "DEFAULT_TTL",
    "Answer",
    "Counters",
    "DnsServer",
    "Forward",
    "Limits",
    "Reply",
    "Zone",
    "answer",
    "build_zone",
    "respond",
]
