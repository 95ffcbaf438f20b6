"""podnet.dns, the pure parts: the zone built from podnet's state, the answers
to queries, and the wire (parsing, truncation, TCP framing, the reply cache)."""

from __future__ import annotations

import importlib
import ipaddress
import struct
from collections.abc import Sequence

import dns.edns
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podnet.dns import Forward, Reply, Zone, answer, build_zone, respond
from podnet.dns.answer import MAX_UDP_PAYLOAD, relay, upstream_query
from podnet.dns.records import MAX_DOMAIN_WIRE, address_label
from podnet.dns.wire import (
    HEADER_SIZE,
    Responder,
    TcpFramer,
    frame,
    header_reply,
    parse_query,
    reply_limit,
)
from podnet.errors import InvalidInput
from podnet.model.pod import Interface, PodSpec
from podnet.model.service import Endpoint, ServicePort, ServiceSpec

IP = ipaddress.ip_address
A, AAAA, SRV, SOA, TXT = (
    dns.rdatatype.A,
    dns.rdatatype.AAAA,
    dns.rdatatype.SRV,
    dns.rdatatype.SOA,
    dns.rdatatype.TXT,
)

# --- podnet state ---------------------------------------------------------------


def pod(name: str, *addresses: str, networks: Sequence[str] = ("n1",)) -> PodSpec:
    """A pod with one interface per network; addresses go round the networks."""
    by_net: dict[str, list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]] = {}
    for i, address in enumerate(addresses):
        by_net.setdefault(networks[i % len(networks)], []).append(ipaddress.ip_interface(address))
    interfaces = tuple(
        Interface(net, f"eth{i}", f"pnv{name}{i}", tuple(addrs))
        for i, (net, addrs) in enumerate(by_net.items())
    )
    return PodSpec(name, interfaces=interfaces)


def ep(address: str, pod: str | None = None, *, ready: bool = True, weight: int = 1) -> Endpoint:
    return Endpoint(IP(address), pod=pod, ready=ready, weight=weight)


HTTP = ServicePort(80, 8080, "tcp", "http")
DNSPORT = ServicePort(53, 5353, "udp", "dns")
UNNAMED = ServicePort(9100, 9100)
PG = ServicePort(5432, 5433, "tcp", "pg")

PODS = [
    pod("web-1", "10.89.0.5/24", "10.90.0.5/24", "fd00:89::5/64", networks=("n1", "n2")),
    pod("web-2", "10.89.0.6/24"),
    pod("db-1", "10.89.0.7/24"),
    PodSpec("pending"),  # admitted, no addresses yet
]
WEB = ServiceSpec(
    "web",
    (HTTP, DNSPORT, UNNAMED),
    selector={"app": "web"},
    vips=(IP("10.96.0.10"), IP("fd00:96::10")),
)
DB = ServiceSpec("db", (PG,), selector={"app": "db"}, headless=True)
DB_ENDPOINTS = [
    ep("10.89.0.7", "db-1", weight=3),
    ep("10.89.0.8"),  # no pod: a manual endpoint
    ep("10.89.0.11", "gone"),  # a pod podnet does not know (any more)
    ep("10.89.0.9", "web-2", ready=False),
    ep("10.89.0.10", weight=0),  # drained
    ep("fd00:89::8"),
]
NO_VIP = ServiceSpec("novip", (HTTP,), selector={"app": "x"})
SERVICES = [
    (WEB, [ep("10.89.0.5", "web-1"), ep("10.89.0.6", "web-2", ready=False)]),
    (DB, DB_ENDPOINTS),
    (NO_VIP, [ep("10.89.0.5")]),
]


@pytest.fixture(scope="module")
def zone() -> Zone:
    return build_zone("podnet.", PODS, SERVICES)


def name(text: str) -> dns.name.Name:
    return dns.name.from_text(text)


def texts(zone: Zone, owner: str, rdtype: dns.rdatatype.RdataType) -> set[str]:
    rdataset = zone.rdatasets(name(owner)).get(rdtype)
    return set() if rdataset is None else {rd.to_text() for rd in rdataset}


# --- build_zone -----------------------------------------------------------------


def test_pod_names_have_every_address_of_every_interface(zone: Zone) -> None:
    assert texts(zone, "web-1.podnet.", A) == {"10.89.0.5", "10.90.0.5"}
    assert texts(zone, "web-1.podnet.", AAAA) == {"fd00:89::5"}
    assert texts(zone, "web-2.podnet.", A) == {"10.89.0.6"}


def test_pods_without_addresses_have_no_name(zone: Zone) -> None:
    assert not zone.exists(name("pending.podnet."))


def test_services_answer_their_vips(zone: Zone) -> None:
    assert texts(zone, "web.podnet.", A) == {"10.96.0.10"}
    assert texts(zone, "web.podnet.", AAAA) == {"fd00:96::10"}


def test_vip_services_have_one_srv_per_named_port_pointing_at_themselves(zone: Zone) -> None:
    assert texts(zone, "_http._tcp.web.podnet.", SRV) == {"0 0 80 web.podnet."}
    assert texts(zone, "_dns._udp.web.podnet.", SRV) == {"0 0 53 web.podnet."}
    srv_owners = {str(n) for n in zone.records if str(n).endswith("web.podnet.")}
    assert srv_owners == {"web.podnet.", "_http._tcp.web.podnet.", "_dns._udp.web.podnet."}


def test_headless_services_answer_ready_endpoints_only(zone: Zone) -> None:
    assert texts(zone, "db.podnet.", A) == {"10.89.0.7", "10.89.0.8", "10.89.0.11"}
    assert texts(zone, "db.podnet.", AAAA) == {"fd00:89::8"}


def test_headless_srv_points_at_pods_or_at_names_of_addresses(zone: Zone) -> None:
    v6 = address_label(IP("fd00:89::8"))
    assert texts(zone, "_pg._tcp.db.podnet.", SRV) == {
        "0 3 5433 db-1.podnet.",
        "0 1 5433 10-89-0-8.db.podnet.",
        "0 1 5433 10-89-0-11.db.podnet.",
        f"0 1 5433 {v6}.db.podnet.",
    }
    assert texts(zone, "10-89-0-8.db.podnet.", A) == {"10.89.0.8"}
    assert texts(zone, f"{v6}.db.podnet.", AAAA) == {"fd00:89::8"}
    assert v6 == "fd00-0089-0000-0000-0000-0000-0000-0008"


def test_vip_service_without_vips_has_no_records_yet(zone: Zone) -> None:
    assert not zone.exists(name("novip.podnet."))


def test_every_record_has_the_zone_ttl_and_the_soa_its_negative_ttl() -> None:
    zone = build_zone("podnet.", PODS, SERVICES, ttl=7)
    ttls = {rds.ttl for by_type in zone.records.values() for rds in by_type.values()}
    assert ttls == {7}
    assert zone.soa[0].minimum == 7
    assert zone.soa[0].mname == name("podnet.")


def test_empty_non_terminals_exist(zone: Zone) -> None:
    assert zone.exists(name("_tcp.web.podnet."))
    assert zone.exists(name("podnet."))
    assert not zone.rdatasets(name("_tcp.web.podnet."))


def test_a_service_shadows_a_pod_of_the_same_name() -> None:
    zone = build_zone("podnet.", [*PODS, pod("web", "10.89.0.99/24")], SERVICES)
    assert texts(zone, "web.podnet.", A) == {"10.96.0.10"}
    assert zone.shadowed == ("web",)


def test_the_domain_may_be_relative_and_deep() -> None:
    zone = build_zone("cluster.example", PODS, SERVICES)
    assert zone.origin == name("cluster.example.")
    assert texts(zone, "web-2.cluster.example.", A) == {"10.89.0.6"}


def test_the_longest_names_fit_under_the_longest_domain() -> None:
    domain = "abcdefgh." * 16 + "x" * 5  # 149 characters: MAX_DOMAIN_WIRE bytes on the wire
    assert len(name(domain).to_wire() or b"") == MAX_DOMAIN_WIRE
    long_name = "s" * 63
    spec = ServiceSpec(long_name, (ServicePort(1, 1, "udp", "p" * 15),), headless=True)
    zone = build_zone(domain, [], [(spec, [ep("fd00::1")])])
    assert len(zone.records) == 4


@pytest.mark.parametrize("domain", [".", "a..b", "x" * 64 + ".podnet.", "abcdefgh." * 17])
def test_bad_domains_are_refused(domain: str) -> None:
    with pytest.raises(InvalidInput):
        build_zone(domain)


@pytest.mark.parametrize("ttl", [-1, 3601])
def test_ttls_out_of_range_are_refused(ttl: int) -> None:
    with pytest.raises(InvalidInput):
        build_zone("podnet.", ttl=ttl)


def test_the_serial_follows_the_records() -> None:
    one = build_zone("podnet.", PODS, SERVICES)
    assert build_zone("podnet.", PODS, SERVICES).serial == one.serial
    assert build_zone("podnet.", PODS[:1], SERVICES).serial != one.serial


def test_zones_are_immutable(zone: Zone) -> None:
    with pytest.raises(TypeError):
        zone.records[name("x.podnet.")] = {}  # type: ignore[index]
    rdataset = zone.rdatasets(name("web-2.podnet."))[A]
    with pytest.raises(TypeError):
        rdataset.add(rdataset[0])
    with pytest.raises(AttributeError):
        zone.ttl = 1  # type: ignore[misc]


def test_the_text_form_lists_every_record(zone: Zone) -> None:
    text = zone.to_text()
    assert "web-1.podnet. 5 IN A 10.90.0.5\n" in text
    assert "_pg._tcp.db.podnet. 5 IN SRV 0 3 5433 db-1.podnet.\n" in text
    assert " IN SOA podnet. hostmaster.podnet. " in text


# --- answer ---------------------------------------------------------------------


def query(
    qname: str, rdtype: str = "A", *, edns: int = -1, payload: int = 1232, rd: bool = True
) -> dns.message.Message:
    message = dns.message.make_query(qname, rdtype, use_edns=edns, payload=payload)
    if not rd:
        message.flags &= ~dns.flags.RD
    return message


def reply(
    message: dns.message.Message, zone: Zone, can_forward: bool = False
) -> dns.message.Message:
    decision = answer(message, zone, can_forward=can_forward)
    assert isinstance(decision, Reply)
    # what a client sees: through the wire and back
    return dns.message.from_wire(decision.message.to_wire())


def answers(response: dns.message.Message) -> set[str]:
    return {rd.to_text() for rrset in response.answer for rd in rrset}


def test_a_and_aaaa_are_authoritative_answers(zone: Zone) -> None:
    response = reply(query("web-1.podnet.", "A"), zone)
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA
    assert not response.flags & dns.flags.RA
    assert answers(response) == {"10.89.0.5", "10.90.0.5"}
    assert answers(reply(query("web-1.podnet.", "AAAA"), zone)) == {"fd00:89::5"}


def test_names_are_case_insensitive_and_the_question_keeps_its_case(zone: Zone) -> None:
    message = query("WeB-1.PodNet.", "A")
    decision = answer(message, zone, can_forward=False)
    assert isinstance(decision, Reply)
    wire = decision.message.to_wire()
    assert b"\x05WeB-1\x06PodNet\x00" in wire
    assert answers(dns.message.from_wire(wire)) == {"10.89.0.5", "10.90.0.5"}


def test_srv_answers_carry_their_targets_addresses(zone: Zone) -> None:
    response = reply(query("_pg._tcp.db.podnet.", "SRV"), zone)
    assert len(answers(response)) == 4
    extra = {(str(r.name), rd.to_text()) for r in response.additional for rd in r}
    assert ("db-1.podnet.", "10.89.0.7") in extra
    assert ("10-89-0-8.db.podnet.", "10.89.0.8") in extra
    vip = reply(query("_http._tcp.web.podnet.", "SRV"), zone)
    assert answers(vip) == {"0 0 80 web.podnet."}
    assert {rd.to_text() for r in vip.additional for rd in r} == {"10.96.0.10", "fd00:96::10"}


def test_unknown_names_in_the_zone_are_nxdomain_with_the_soa(zone: Zone) -> None:
    response = reply(query("nope.podnet."), zone)
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert response.flags & dns.flags.AA
    assert not response.answer
    (soa,) = response.authority
    assert soa.rdtype == SOA and soa.name == zone.origin
    assert soa.ttl == zone.ttl and soa[0].minimum == zone.ttl


@pytest.mark.parametrize(
    ("qname", "rdtype"),
    [
        ("web-1.podnet.", "TXT"),
        ("web-2.podnet.", "AAAA"),
        ("_tcp.web.podnet.", "SRV"),
        ("podnet.", "A"),
    ],
)
def test_known_names_without_the_type_are_nodata(zone: Zone, qname: str, rdtype: str) -> None:
    response = reply(query(qname, rdtype), zone)
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA
    assert not response.answer
    assert [r.rdtype for r in response.authority] == [SOA]


def test_the_apex_answers_its_soa(zone: Zone) -> None:
    response = reply(query("podnet.", "SOA"), zone)
    assert [r.rdtype for r in response.answer] == [SOA]


def test_any_answers_every_type_of_the_name(zone: Zone) -> None:
    response = reply(query("web-1.podnet.", "ANY"), zone)
    assert {r.rdtype for r in response.answer} == {A, AAAA}


def test_names_outside_the_zone_are_refused_without_upstreams(zone: Zone) -> None:
    response = reply(query("example.com."), zone)
    assert response.rcode() == dns.rcode.REFUSED
    assert not response.flags & dns.flags.AA


def test_names_outside_the_zone_are_forwarded_when_upstreams_exist(zone: Zone) -> None:
    message = query("example.com.")
    assert answer(message, zone, can_forward=True) == Forward(message)
    # a name that merely ends like the zone is outside it
    assert isinstance(answer(query("xpodnet."), zone, can_forward=True), Forward)


def test_only_recursive_queries_are_forwarded(zone: Zone) -> None:
    response = reply(query("example.com.", rd=False), zone, can_forward=True)
    assert response.rcode() == dns.rcode.REFUSED
    assert response.flags & dns.flags.RA


def test_ra_says_whether_the_server_recurses(zone: Zone) -> None:
    assert reply(query("web-2.podnet."), zone, can_forward=True).flags & dns.flags.RA
    assert not reply(query("web-2.podnet."), zone).flags & dns.flags.RA


def with_questions(count: int) -> dns.message.Message:
    message = query("web-2.podnet.")
    message.question = [message.question[0]] * count
    return message


def with_opcode(opcode: dns.opcode.Opcode) -> dns.message.Message:
    message = query("web-2.podnet.")
    message.set_opcode(opcode)
    return message


def in_class(rdclass: str) -> dns.message.Message:
    return dns.message.make_query("version.bind.", "TXT", rdclass)


@pytest.mark.parametrize(
    ("message", "rcode"),
    [
        (with_questions(0), dns.rcode.FORMERR),
        (with_questions(2), dns.rcode.FORMERR),
        (with_opcode(dns.opcode.NOTIFY), dns.rcode.NOTIMP),
        (with_opcode(dns.opcode.STATUS), dns.rcode.NOTIMP),
        (in_class("CH"), dns.rcode.REFUSED),
        (query("podnet.", "AXFR"), dns.rcode.REFUSED),
        (query("podnet.", "IXFR"), dns.rcode.REFUSED),
        (query("web-2.podnet.", "MAILB"), dns.rcode.NOTIMP),
        (query("web-2.podnet.", "OPT"), dns.rcode.FORMERR),
        (query("web-2.podnet.", edns=1), dns.rcode.BADVERS),
    ],
    ids=[
        "no-question",
        "two-questions",
        "notify",
        "status",
        "chaos",
        "axfr",
        "ixfr",
        "mailb",
        "opt",
        "edns1",
    ],
)
def test_queries_podnet_cannot_answer(
    zone: Zone, message: dns.message.Message, rcode: dns.rcode.Rcode
) -> None:
    response = reply(message, zone)
    assert response.rcode() == rcode
    assert response.id == message.id
    assert not response.answer
    if rcode == dns.rcode.FORMERR:
        assert not response.question


def test_a_response_is_not_a_query(zone: Zone) -> None:
    message = query("web-2.podnet.")
    message.flags |= dns.flags.QR
    assert reply(message, zone).rcode() == dns.rcode.FORMERR


def test_edns_queries_get_edns_answers(zone: Zone) -> None:
    assert reply(query("web-2.podnet."), zone).edns == -1
    response = reply(query("web-2.podnet.", edns=0, payload=4096), zone)
    assert response.edns == 0
    assert response.payload == MAX_UDP_PAYLOAD


# --- forwarding helpers ----------------------------------------------------------


def test_upstream_queries_are_fresh_and_recursive() -> None:
    client = query("example.com.", "AAAA", edns=0, payload=4096)
    client.want_dnssec(True)
    client.flags |= dns.flags.CD
    upstream = upstream_query(client)
    assert upstream.question == client.question
    assert upstream.flags & dns.flags.RD and upstream.flags & dns.flags.CD
    assert upstream.ednsflags & dns.flags.DO
    assert upstream.payload == MAX_UDP_PAYLOAD
    plain = upstream_query(query("example.com."))
    assert not plain.ednsflags & dns.flags.DO and not plain.flags & dns.flags.CD


def test_relayed_answers_keep_the_client_id_and_the_upstream_records() -> None:
    client = query("example.com.")
    upstream_answer = dns.message.make_response(upstream_query(client))
    upstream_answer.flags |= dns.flags.AA | dns.flags.AD
    upstream_answer.answer = [dns.rrset.from_text("example.com.", 60, "IN", "A", "192.0.2.1")]
    upstream_answer.set_rcode(dns.rcode.NXDOMAIN)
    response = relay(client, upstream_answer)
    assert response.id == client.id
    assert response.rcode() == dns.rcode.NXDOMAIN
    assert answers(response) == {"192.0.2.1"}
    assert response.flags & dns.flags.RA
    assert not response.flags & (dns.flags.AA | dns.flags.AD)


# --- the wire -------------------------------------------------------------------


def wire_reply(zone: Zone, wire: bytes, *, tcp: bool = False) -> dns.message.Message:
    out = respond(wire, zone, tcp=tcp, can_forward=False)
    assert isinstance(out, bytes)
    return dns.message.from_wire(out)


@pytest.mark.parametrize("wire", [b"", b"\x12", b"\x00" * (HEADER_SIZE - 1)])
def test_messages_without_a_header_get_no_reply(zone: Zone, wire: bytes) -> None:
    assert respond(wire, zone, tcp=False, can_forward=False) is None


def test_responses_get_no_reply(zone: Zone) -> None:
    message = query("web-2.podnet.")
    message.flags |= dns.flags.QR
    assert parse_query(message.to_wire()) is None


@pytest.mark.parametrize("tail", [b"", b"\x01", b"\xff" * 40, b"\x07web"])
def test_garbage_after_a_header_is_a_bare_formerr(zone: Zone, tail: bytes) -> None:
    wire = b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + tail  # one question
    out = respond(wire, zone, tcp=False, can_forward=False)
    assert isinstance(out, bytes) and len(out) == HEADER_SIZE
    response = dns.message.from_wire(out)
    assert response.id == 0xABCD
    assert response.rcode() == dns.rcode.FORMERR
    assert response.flags & dns.flags.QR and response.flags & dns.flags.RD


def test_trailing_bytes_are_malformed(zone: Zone) -> None:
    wire = query("web-2.podnet.").to_wire() + b"junk"
    assert wire_reply(zone, wire).rcode() == dns.rcode.FORMERR


def test_header_replies_copy_id_opcode_and_rd() -> None:
    header = struct.pack("!HHHHHH", 7, 0x2900, 1, 0, 0, 0)  # opcode UPDATE, RD
    out = header_reply(header, dns.rcode.SERVFAIL)
    assert out == struct.pack("!HHHHHH", 7, 0x8000 | 0x2900 | 2, 0, 0, 0, 0)
    assert header_reply(b"short", dns.rcode.SERVFAIL) is None


def big_zone(endpoints: int = 120) -> Zone:
    spec = ServiceSpec("big", (HTTP,), selector={"a": "b"}, headless=True)
    eps = [ep(f"10.89.{i // 250}.{i % 250 + 1}") for i in range(endpoints)]
    return build_zone("podnet.", [], [(spec, eps)])


def test_udp_answers_over_512_bytes_are_truncated_for_clients_without_edns() -> None:
    zone = big_zone()
    response = wire_reply(zone, query("big.podnet.").to_wire())
    assert response.flags & dns.flags.TC
    assert response.rcode() == dns.rcode.NOERROR
    full = wire_reply(zone, query("big.podnet.").to_wire(), tcp=True)
    assert not full.flags & dns.flags.TC
    assert len(answers(full)) == 120


def test_udp_answers_fit_the_clients_edns_payload_size() -> None:
    zone = big_zone(40)  # 40 * 16 bytes of A records: over 512, under 1232
    assert wire_reply(zone, query("big.podnet.").to_wire()).flags & dns.flags.TC
    edns = wire_reply(zone, query("big.podnet.", edns=0, payload=1232).to_wire())
    assert not edns.flags & dns.flags.TC and len(answers(edns)) == 40
    small = wire_reply(zone, query("big.podnet.", edns=0, payload=600).to_wire())
    assert small.flags & dns.flags.TC


def test_udp_answers_stay_within_podnets_own_payload_size() -> None:
    zone = big_zone(120)  # ~2 KB of answer
    wire = query("big.podnet.", edns=0, payload=4096).to_wire()
    out = respond(wire, zone, tcp=False, can_forward=False)
    assert isinstance(out, bytes) and len(out) <= MAX_UDP_PAYLOAD
    assert dns.message.from_wire(out).flags & dns.flags.TC


def test_reply_limits() -> None:
    assert reply_limit(query("a."), tcp=False) == 512
    assert reply_limit(query("a.", edns=0, payload=100), tcp=False) == 512
    assert reply_limit(query("a.", edns=0, payload=1000), tcp=False) == 1000
    assert reply_limit(query("a.", edns=0, payload=9000), tcp=False) == MAX_UDP_PAYLOAD
    assert reply_limit(query("a."), tcp=True) == 65535


def test_the_responder_reuses_replies_with_the_new_id(zone: Zone) -> None:
    responder = Responder(can_forward=False)
    first, second = query("web-2.podnet."), query("web-2.podnet.")
    second.id = (first.id + 1) % 65536
    one = responder.respond(first.to_wire(), zone, tcp=False)
    two = responder.respond(second.to_wire(), zone, tcp=False)
    assert len(responder) == 1
    assert isinstance(one, bytes) and isinstance(two, bytes)
    assert one[2:] == two[2:]
    assert dns.message.from_wire(two).id == second.id


def test_the_responder_forgets_replies_when_the_zone_changes(zone: Zone) -> None:
    responder = Responder(can_forward=False)
    wire = query("web-2.podnet.").to_wire()
    responder.respond(wire, zone, tcp=False)
    swapped = build_zone("podnet.", [pod("web-2", "10.89.0.66/24")], [])
    out = responder.respond(wire, swapped, tcp=False)
    assert isinstance(out, bytes)
    assert answers(dns.message.from_wire(out)) == {"10.89.0.66"}


def test_the_responder_keeps_no_shuffled_nor_large_messages(zone: Zone) -> None:
    responder = Responder(can_forward=False)
    responder.respond(query("db.podnet.").to_wire(), zone, tcp=False)  # three addresses
    padded = query("web-2.podnet.", edns=0)
    padded.use_edns(0, options=[dns.edns.GenericOption(dns.edns.OptionType.PADDING, b"\0" * 600)])
    responder.respond(padded.to_wire(), zone, tcp=False)
    big = big_zone()  # 120 SRV records: a reply of kilobytes over TCP
    responder.respond(query("_http._tcp.big.podnet.", "SRV").to_wire(), big, tcp=True)
    assert len(responder) == 0


def test_the_responder_evicts_the_oldest_reply(zone: Zone) -> None:
    responder = Responder(can_forward=False, cache_size=2)
    for owner in ("web-1.podnet.", "web-2.podnet.", "db-1.podnet."):
        responder.respond(query(owner, "AAAA").to_wire(), zone, tcp=False)
    assert len(responder) == 2


def test_the_tcp_framer_cuts_messages_wherever_the_stream_breaks() -> None:
    messages = [b"one", b"", b"three" * 100]
    stream = b"".join(frame(m) for m in messages)
    for cut in range(len(stream) + 1):
        framer = TcpFramer()
        got = framer.receive(stream[:cut]) + framer.receive(stream[cut:])
        assert got == messages
        assert framer.pending == 0
    framer = TcpFramer()
    assert framer.receive(b"\x00\x05abc") == [] and framer.pending == 5


# --- garbage in -------------------------------------------------------------------


def mutated(wire: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    data = bytearray(wire)
    for position, value in edits:
        data[position % len(data)] = value
    return bytes(data[: max(cut, 0) or len(data)])


QUERIES = [
    query("web-1.podnet.").to_wire(),
    query("_pg._tcp.db.podnet.", "SRV", edns=0).to_wire(),
    query("example.com.", "AAAA", edns=0).to_wire(),
]


def check_reply(wire: bytes, out: bytes | Forward | None) -> None:
    if isinstance(out, bytes):
        response = dns.message.from_wire(out)
        assert response.id == int.from_bytes(wire[:2], "big")
        assert response.flags & dns.flags.QR


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=700), st.booleans(), st.booleans())
def test_random_bytes_never_raise(wire: bytes, tcp: bool, can_forward: bool) -> None:
    zone = build_zone("podnet.", PODS, SERVICES)
    check_reply(wire, respond(wire, zone, tcp=tcp, can_forward=can_forward))


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(QUERIES),
    st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 255)), max_size=6),
    st.integers(-5, 120),
    st.booleans(),
)
def test_mutated_queries_never_raise(
    wire: bytes, edits: list[tuple[int, int]], cut: int, tcp: bool
) -> None:
    zone = build_zone("podnet.", PODS, SERVICES)
    data = mutated(wire, edits, cut)
    check_reply(data, respond(data, zone, tcp=tcp, can_forward=True))


# --- the public surface -------------------------------------------------------------

MODULES = [
    "podnet.dns",
    "podnet.dns.answer",
    "podnet.dns.forward",
    "podnet.dns.handler",
    "podnet.dns.protocols",
    "podnet.dns.records",
    "podnet.dns.server",
    "podnet.dns.wire",
]


@pytest.mark.parametrize("module_name", MODULES)
def test_exported_names_exist_once(module_name: str) -> None:
    module = importlib.import_module(module_name)
    assert sorted(module.__all__) == sorted(set(module.__all__))
    for export in module.__all__:
        assert hasattr(module, export), export


def test_in_class_helper_builds_non_in_queries() -> None:
    assert in_class("CH").question[0].rdclass == dns.rdataclass.CH
