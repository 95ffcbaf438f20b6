"""Answers to DNS queries from a :class:`~podnet.dns.records.Zone`: pure, no I/O.

Theory of operation: :func:`answer` takes a parsed query and the current zone
and returns either a :class:`Reply` (a response message to send back) or a
:class:`Forward` (the query is for a name outside the zone and upstreams
exist: the server asks them and turns their answer into a reply with
:func:`relay`, or into :func:`error_response` SERVFAIL when they fail).

The decisions, in order:

============================================  ===================================
query                                         reply
============================================  ===================================
is a response (QR set)                        FORMERR
opcode other than QUERY                       NOTIMP
EDNS version above 0                          BADVERS (RFC 6891)
not exactly one question                      FORMERR, no question
class other than IN                           REFUSED
type AXFR or IXFR (zone transfer)             REFUSED
type OPT                                      FORMERR
other meta type (ANY excepted)                NOTIMP
name outside the zone                         forward if allowed and RD, else REFUSED
name with records of the type (or ANY)        NOERROR, AA, the records
name that exists without that type            NOERROR, AA, no answer, SOA (NODATA)
name that does not exist                      NXDOMAIN, AA, SOA
============================================  ===================================

The SOA in a negative answer carries the zone's TTL as its TTL and minimum,
so resolvers cache the absence as briefly as the records (RFC 2308). An SRV
answer carries the addresses of its in-zone targets as additional records.
RA is set when the server can forward. Answer records take the question's
name as asked, so its letter case is preserved.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rrset

from podnet.dns.records import Zone

__all__ = [
    "MAX_UDP_PAYLOAD",
    "Answer",
    "Forward",
    "Reply",
    "answer",
    "error_response",
    "relay",
    "upstream_query",
]

#: The EDNS payload size podnet advertises and the most it sends over UDP
#: (DNS flag day 2020: answers that never need IP fragments).
MAX_UDP_PAYLOAD = 1232
_TRANSFERS = (dns.rdatatype.AXFR, dns.rdatatype.IXFR)
_ADDRESS_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)
_MAX_PLAIN_RCODE = 15  # larger ones are EDNS's, about the upstream's EDNS, not the client's


@dataclass(frozen=True, slots=True)
class Reply:
    """Send ``message`` back to the client."""

    message: dns.message.Message


@dataclass(frozen=True, slots=True)
class Forward:
    """Ask the upstreams: ``query`` is for a name outside the zone."""

    query: dns.message.Message


Answer = Reply | Forward


def answer(query: dns.message.Message, zone: Zone, *, can_forward: bool) -> Answer:
    """Decide what to answer to ``query`` from ``zone``.

    Args:
        query: a parsed DNS message (anything dnspython could parse).
        zone: the current snapshot.
        can_forward: whether upstream servers exist for names outside the zone.

    Returns:
        A :class:`Reply`, or a :class:`Forward` for a recursive query outside
        the zone when ``can_forward``.
    """
    if query.flags & dns.flags.QR:
        return Reply(_formerr_to_response(query))
    problem = _problem(query)
    if problem is not None:
        return Reply(error_response(query, problem, recursion=can_forward))
    question = query.question[0]
    if not zone.contains(question.name):
        if can_forward and query.flags & dns.flags.RD:
            return Forward(query)
        return Reply(error_response(query, dns.rcode.REFUSED, recursion=can_forward))
    return Reply(_authoritative(query, zone, can_forward))


def _problem(query: dns.message.Message) -> dns.rcode.Rcode | None:
    """The error rcode ``query`` deserves before any lookup, or None."""
    if query.opcode() != dns.opcode.QUERY:
        return dns.rcode.NOTIMP
    if query.edns > 0:
        return dns.rcode.BADVERS
    if len(query.question) != 1:
        return dns.rcode.FORMERR
    question = query.question[0]
    if question.rdclass != dns.rdataclass.IN or question.rdtype in _TRANSFERS:
        return dns.rcode.REFUSED
    if question.rdtype == dns.rdatatype.OPT:
        return dns.rcode.FORMERR
    if dns.rdatatype.is_metatype(question.rdtype) and question.rdtype != dns.rdatatype.ANY:
        return dns.rcode.NOTIMP
    return None


def error_response(
    query: dns.message.Message, rcode: dns.rcode.Rcode, *, recursion: bool = False
) -> dns.message.Message:
    """A response to ``query`` with ``rcode`` and no records (no question for FORMERR)."""
    response = _response(query, recursion)
    response.set_rcode(rcode)
    if rcode == dns.rcode.FORMERR:
        response.question = []
    return response


def _response(query: dns.message.Message, recursion: bool) -> dns.message.Message:
    return dns.message.make_response(
        query, recursion_available=recursion, our_payload=MAX_UDP_PAYLOAD, pad=0
    )


def _formerr_to_response(message: dns.message.Message) -> dns.message.Message:
    """FORMERR to a "query" that is itself a response (make_response refuses those)."""
    reply = dns.message.Message(id=message.id)
    reply.flags = dns.flags.QR
    reply.set_rcode(dns.rcode.FORMERR)
    return reply


def _authoritative(query: dns.message.Message, zone: Zone, recursion: bool) -> dns.message.Message:
    """The zone's answer: records, NODATA or NXDOMAIN, with AA set."""
    question = query.question[0]
    response = _response(query, recursion)
    response.flags |= dns.flags.AA
    found = _lookup(zone, question.name, question.rdtype)
    if found:
        response.answer = [_rrset(question.name, rdataset) for rdataset in found]
        response.additional = _additional(zone, found)
        return response
    if not zone.exists(question.name):
        response.set_rcode(dns.rcode.NXDOMAIN)
    response.authority = [_rrset(zone.origin, zone.soa)]
    return response


def _lookup(
    zone: Zone, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
) -> list[dns.rdataset.Rdataset]:
    rdatasets = zone.rdatasets(name)
    if rdtype == dns.rdatatype.ANY:
        return list(rdatasets.values())
    found = rdatasets.get(rdtype)
    return [found] if found is not None else []


def _additional(zone: Zone, found: Iterable[dns.rdataset.Rdataset]) -> list[dns.rrset.RRset]:
    """A/AAAA of the in-zone targets of SRV records (saves the client a round trip)."""
    out: list[dns.rrset.RRset] = []
    targets = {rd.target for rds in found if rds.rdtype == dns.rdatatype.SRV for rd in rds}
    for target in sorted(targets):
        by_type = zone.rdatasets(target)
        out.extend(_rrset(target, by_type[t]) for t in _ADDRESS_TYPES if t in by_type)
    return out


def _rrset(name: dns.name.Name, rdataset: dns.rdataset.Rdataset) -> dns.rrset.RRset:
    return dns.rrset.from_rdata_list(name, rdataset.ttl, list(rdataset))


def upstream_query(query: dns.message.Message) -> dns.message.Message:
    """The query podnet sends upstream for a client's ``query``.

    A fresh message with a fresh random ID: the client's question, RD, its CD
    and DNSSEC OK bits, EDNS 0 with podnet's payload size, none of its
    options. The upstream's answer goes back through :func:`relay`.
    """
    question = query.question[0]
    upstream = dns.message.make_query(
        question.name,
        question.rdtype,
        question.rdclass,
        use_edns=0,
        payload=MAX_UDP_PAYLOAD,
        want_dnssec=bool(query.ednsflags & dns.flags.DO),
    )
    upstream.flags = dns.flags.RD | (query.flags & dns.flags.CD)
    return upstream


def relay(query: dns.message.Message, upstream: dns.message.Message) -> dns.message.Message:
    """The client's reply made of an upstream's ``upstream`` answer to its ``query``.

    The client's ID and question, the upstream's rcode (SERVFAIL for an
    extended one) and records; RA set, AA and AD clear (podnet is neither
    the authority nor a validator).
    """
    response = _response(query, True)
    rcode = upstream.rcode()
    response.set_rcode(rcode if rcode <= _MAX_PLAIN_RCODE else dns.rcode.SERVFAIL)
    response.answer = list(upstream.answer)
    response.authority = list(upstream.authority)
    response.additional = list(upstream.additional)
    return response
