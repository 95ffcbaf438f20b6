"""The CNI protocol layer: environment, configuration, results, errors, GC.

Section numbers refer to the CNI spec 1.1.0 (containernetworking/cni SPEC.md);
the golden results are the spec's own examples, written in each version's
format.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from podnet.cni import spec
from podnet.cni.spec import (
    CURRENT_VERSION,
    DNS,
    SUPPORTED_VERSIONS,
    CniError,
    Command,
    ErrorCode,
    Interface,
    Invocation,
    IPConfig,
    NetConf,
    PodnetPluginConf,
    RequestedIP,
    Result,
    Route,
    check_request,
    parse_cni_args,
    parse_config,
    parse_env,
    parse_plugin_conf,
    reply_version,
    requested_ips,
    requested_version,
    valid_attachments,
    version_info,
)
from podnet.errors import PodnetError
from podnet.model import PortMapping

# -- helpers ----------------------------------------------------------------------

ADD_ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "c0ffee",
    "CNI_NETNS": "/var/run/netns/blue",
    "CNI_IFNAME": "eth0",
}


def env(**over: str | None) -> dict[str, str]:
    """ADD_ENV with some variables replaced; None removes one."""
    out = dict(ADD_ENV)
    for key, value in over.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def conf(**keys: Any) -> bytes:
    doc = {"cniVersion": "1.1.0", "name": "dbnet", "type": "podnet", **keys}
    return json.dumps({k: v for k, v in doc.items() if v is not None}).encode()


def fails(code: int, call: Callable[..., object], *args: Any) -> CniError:
    with pytest.raises(CniError) as info:
        call(*args)
    assert info.value.code == code, info.value
    return info.value


def plugin(**keys: Any) -> PodnetPluginConf:
    return parse_plugin_conf(parse_config(conf(**keys)))


def plugin_fails(code: int, **keys: Any) -> CniError:
    return fails(code, lambda: plugin(**keys))


def net(text: str) -> Any:
    return ipaddress.ip_network(text)


def addr(text: str) -> Any:
    return ipaddress.ip_address(text)


def cidr(text: str) -> Any:
    return ipaddress.ip_interface(text)


# -- the public surface -----------------------------------------------------------


def test_exported_names_exist_once() -> None:
    assert len(set(spec.__all__)) == len(spec.__all__)
    for name in spec.__all__:
        assert hasattr(spec, name), name
    public = {n for n in vars(spec) if not n.startswith("_") and n != "annotations"}
    assert public == set(spec.__all__)


# -- versions (section 2 VERSION, section 5 VERSION Success) ----------------------


def test_supported_versions() -> None:
    assert SUPPORTED_VERSIONS == ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
    assert CURRENT_VERSION == "1.1.0"


def test_version_info_echoes_the_requested_version() -> None:
    assert version_info() == {"cniVersion": "1.1.0", "supportedVersions": list(SUPPORTED_VERSIONS)}
    assert version_info("0.4.0")["cniVersion"] == "0.4.0"
    assert version_info(requested_version(b'{"cniVersion": "1.0.0"}'))["cniVersion"] == "1.0.0"


@pytest.mark.parametrize("stdin", [b"", b"{", b"[]", b'{"cniVersion": 1}', b"\xff", b"{}"])
def test_requested_version_never_raises(stdin: bytes) -> None:
    assert requested_version(stdin) is None
    assert reply_version(stdin) == CURRENT_VERSION


def test_reply_version_keeps_a_supported_version_only() -> None:
    assert reply_version(b'{"cniVersion": "0.3.1"}') == "0.3.1"
    assert reply_version(b'{"cniVersion": "0.2.0"}') == CURRENT_VERSION


# -- errors (section 5 Error) -----------------------------------------------------


def test_well_known_error_codes_match_the_spec_table() -> None:
    assert {c.name: int(c) for c in ErrorCode} == {
        "INCOMPATIBLE_VERSION": 1,
        "UNSUPPORTED_FIELD": 2,
        "UNKNOWN_CONTAINER": 3,
        "INVALID_ENVIRONMENT": 4,
        "IO_FAILURE": 5,
        "DECODING_FAILURE": 6,
        "INVALID_NETWORK_CONFIG": 7,
        "TRY_AGAIN_LATER": 11,
        "PLUGIN_NOT_AVAILABLE": 50,
        "LIMITED_CONNECTIVITY": 51,
    }


def test_error_json_is_the_spec_shape() -> None:
    err = CniError(ErrorCode.INVALID_NETWORK_CONFIG, "Invalid Configuration", "too small")
    out = err.to_json("1.1.0")
    assert out == {
        "cniVersion": "1.1.0",
        "code": 7,
        "msg": "Invalid Configuration",
        "details": "too small",
    }
    assert type(out["code"]) is int
    assert json.loads(json.dumps(out)) == out
    assert isinstance(err, PodnetError) and isinstance(err, Exception)
    assert str(err) == "Invalid Configuration (too small)"
    assert err.to_dict()["code"] == 7
    assert CniError(11, "busy").to_json("0.4.0")["details"] == ""


def test_error_from_a_delegated_plugin() -> None:
    err = CniError.from_json({"code": 7, "msg": "no range", "details": "d"})
    assert (err.code, err.msg, err.details) == (7, "no range", "d")
    assert CniError.from_json({"msg": "?"}).code == 999
    assert CniError.from_json({"code": True, "msg": "?"}).code == 999


# -- environment (section 2 Parameters and each operation's Input) ----------------


def test_add_reads_every_parameter() -> None:
    inv = parse_env(
        env(CNI_ARGS="IgnoreUnknown=1;IP=10.1.0.5/16", CNI_PATH="/opt/cni/bin:/usr/lib/cni")
    )
    assert inv == Invocation(
        command=Command.ADD,
        container_id="c0ffee",
        netns="/var/run/netns/blue",
        ifname="eth0",
        args={"IgnoreUnknown": "1", "IP": "10.1.0.5/16"},
        path=("/opt/cni/bin", "/usr/lib/cni"),
        ignore_unknown=True,
    )
    assert inv.attachment == ("c0ffee", "eth0")


@pytest.mark.parametrize("command", ["ADD", "CHECK"])
@pytest.mark.parametrize("var", ["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"])
def test_add_and_check_need_container_netns_and_ifname(command: str, var: str) -> None:
    err = fails(4, parse_env, env(CNI_COMMAND=command, **{var: None}))
    assert f"[{var}]" in err.msg and "missing" in err.msg
    err = fails(4, parse_env, env(CNI_COMMAND=command, **{var: ""}))
    assert var in err.msg


def test_missing_variables_are_all_named() -> None:
    err = fails(4, parse_env, {"CNI_COMMAND": "ADD"})
    assert err.msg == "required env variables [CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME] missing"


def test_del_tolerates_a_missing_netns() -> None:
    inv = parse_env(env(CNI_COMMAND="DEL", CNI_NETNS=None))
    assert (inv.command, inv.netns, inv.container_id) == (Command.DEL, "", "c0ffee")
    assert parse_env(env(CNI_COMMAND="DEL")).netns == "/var/run/netns/blue"
    for var in ("CNI_CONTAINERID", "CNI_IFNAME"):
        assert var in fails(4, parse_env, env(CNI_COMMAND="DEL", **{var: None})).msg


def test_gc_needs_cni_path_and_no_attachment_parameters() -> None:
    inv = parse_env({"CNI_COMMAND": "GC", "CNI_PATH": "/opt/cni/bin"})
    assert inv == Invocation(Command.GC, path=("/opt/cni/bin",))
    assert "CNI_PATH" in fails(4, parse_env, {"CNI_COMMAND": "GC"}).msg
    # Attachment parameters mean nothing to GC: even malformed ones are ignored.
    odd = {"CNI_COMMAND": "GC", "CNI_PATH": "/b", "CNI_IFNAME": "a/b", "CNI_ARGS": "junk"}
    assert parse_env(odd) == Invocation(Command.GC, path=("/b",))


def test_status_and_version_need_nothing() -> None:
    assert parse_env({"CNI_COMMAND": "STATUS"}) == Invocation(Command.STATUS)
    assert parse_env({"CNI_COMMAND": "STATUS", "CNI_PATH": "/b"}).path == ("/b",)
    assert parse_env({"CNI_COMMAND": "VERSION"}) == Invocation(Command.VERSION)
    assert parse_env({**ADD_ENV, "CNI_COMMAND": "VERSION", "CNI_IFNAME": ""}).ifname == ""


@pytest.mark.parametrize("value", ["", "add", "DELETE", "ADD "])
def test_command_missing_or_unknown(value: str) -> None:
    err = fails(4, parse_env, env(CNI_COMMAND=value))
    assert "CNI_COMMAND" in err.msg
    assert "ADD, DEL, CHECK, GC, STATUS, VERSION" in err.details


def test_command_absent() -> None:
    assert "[CNI_COMMAND]" in fails(4, parse_env, {}).msg


@pytest.mark.parametrize("cid", ["a", "0", "c0ffee", "A.b_c-d", "a" * 64, "9-"])
def test_valid_container_ids(cid: str) -> None:
    assert parse_env(env(CNI_CONTAINERID=cid)).container_id == cid


@pytest.mark.parametrize("cid", ["-a", "_a", ".a", "a b", "a/b", "a:b", "ü", "a\n"])
def test_invalid_container_ids_are_code_4(cid: str) -> None:
    err = fails(4, parse_env, env(CNI_CONTAINERID=cid))
    assert "CNI_CONTAINERID" in err.msg


@pytest.mark.parametrize("name", ["eth0", "e", "a" * 15, "net-1.2_x", "é" * 7, "...", "a.b"])
def test_valid_ifnames(name: str) -> None:
    assert parse_env(env(CNI_IFNAME=name)).ifname == name


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("a" * 16, "longer than 15 bytes"),
        ("é" * 8, "longer than 15 bytes"),
        (".", "reserved"),
        ("..", "reserved"),
        ("a/b", "'/', ':' or whitespace"),
        ("eth0:1", "'/', ':' or whitespace"),
        ("a b", "'/', ':' or whitespace"),
        ("a\tb", "'/', ':' or whitespace"),
        ("a\u00a0b", "'/', ':' or whitespace"),
    ],
)
def test_invalid_ifnames_are_code_4(name: str, why: str) -> None:
    err = fails(4, parse_env, env(CNI_IFNAME=name))
    assert "CNI_IFNAME" in err.msg and why in err.msg
    assert "1-15 bytes" in err.details


@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,80}", fullmatch=True))
def test_any_spec_container_id_is_accepted(cid: str) -> None:
    assert parse_env(env(CNI_CONTAINERID=cid)).container_id == cid


@given(
    st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=15).filter(
        lambda s: len(s.encode()) <= 15
    )
)
def test_ifname_rules_are_exactly_the_kernels(name: str) -> None:
    ok = name not in {".", ".."} and not any(c in "/:" or c.isspace() for c in name)
    try:
        parse_env(env(CNI_IFNAME=name))
    except CniError as err:
        assert not ok and err.code == 4
    else:
        assert ok


def test_ifname_bytes_that_are_not_utf8_count_one_each() -> None:
    # os.environ turns undecodable bytes into surrogate escapes
    assert parse_env(env(CNI_IFNAME="\udcff" * 15)).ifname == "\udcff" * 15
    assert "longer than 15 bytes" in fails(4, parse_env, env(CNI_IFNAME="\udcff" * 16)).msg


def test_cni_path_drops_empty_entries() -> None:
    assert parse_env(env(CNI_PATH=":/a::/b:")).path == ("/a", "/b")
    assert parse_env(env()).path == ()


# -- CNI_ARGS ---------------------------------------------------------------------


def test_cni_args_pairs() -> None:
    assert parse_cni_args("") == {}
    assert parse_cni_args("FOO=BAR;ABC=123") == {"FOO": "BAR", "ABC": "123"}
    assert parse_cni_args("K=a=b;E=") == {"K": "a=b", "E": ""}
    assert parse_cni_args("K=1;K=2") == {"K": "2"}


@pytest.mark.parametrize("text", ["FOO", "=x", "A=1;", ";A=1", "A=1;;B=2"])
def test_malformed_cni_args_are_code_4(text: str) -> None:
    err = fails(4, parse_env, env(CNI_ARGS=text))
    assert "CNI_ARGS" in err.msg


@pytest.mark.parametrize(
    ("value", "ignore"),
    [("1", True), ("true", True), ("True", True), ("0", False), ("false", False)],
)
def test_ignore_unknown(value: str, ignore: bool) -> None:
    inv = parse_env(env(CNI_ARGS=f"IgnoreUnknown={value};K8S_POD_NAME=web"))
    assert inv.ignore_unknown is ignore


def test_ignore_unknown_bad_value() -> None:
    err = fails(4, parse_env, env(CNI_ARGS="IgnoreUnknown=yes"))
    assert "IgnoreUnknown" in err.msg and "CNI_ARGS" in err.msg


def test_check_args_refuses_unknown_keys_unless_told_to_ignore_them() -> None:
    inv = parse_env(env(CNI_ARGS="IP=10.1.0.5;K8S_POD_NAME=web;MAC=x"))
    inv.check_args({"IP", "MAC", "K8S_POD_NAME"})
    err = fails(4, inv.check_args, {"IP"})
    assert err.msg == "CNI_ARGS has unknown keys: K8S_POD_NAME, MAC"
    assert "IgnoreUnknown=1" in err.details
    parse_env(env(CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAME=web")).check_args({"IP"})
    parse_env(env(CNI_ARGS="IgnoreUnknown=0")).check_args(())


# -- configuration: decoding and the protocol's keys (sections 1 and 3) -----------

# Section 1's example, as section 3 derives it for the bridge plugin (spec 1.1.0
# appendix, "Add example" step 1), with podnet as the type.
SPEC_ADD_CONFIG = {
    "cniVersion": "1.1.0",
    "name": "dbnet",
    "type": "podnet",
    "bridge": "cni0",
    "keyA": ["some more", "plugin specific", "configuration"],
    "ipam": {"type": "host-local", "subnet": "10.1.0.0/16", "gateway": "10.1.0.1"},
    "dns": {"nameservers": ["10.1.0.1"]},
}


def test_spec_add_example_parses() -> None:
    c = parse_config(json.dumps(SPEC_ADD_CONFIG).encode())
    assert (c.cni_version, c.name, c.type) == ("1.1.0", "dbnet", "podnet")
    assert c.ipam is not None and c.ipam.type == "host-local"
    assert c.ipam.raw["subnet"] == "10.1.0.0/16"
    assert c.dns == DNS(nameservers=("10.1.0.1",))
    assert c.plugin == {"bridge": "cni0", "keyA": ["some more", "plugin specific", "configuration"]}
    assert c.raw == SPEC_ADD_CONFIG
    assert c.prev_result is None and c.valid_attachments is None
    assert (c.disable_check, c.disable_gc) == (False, False)


def test_spec_tuning_example_with_runtime_config_and_prev_result() -> None:
    doc = {
        "cniVersion": "1.1.0",
        "name": "dbnet",
        "type": "tuning",
        "sysctl": {"net.core.somaxconn": "500"},
        "runtimeConfig": {"mac": "00:11:22:33:44:66"},
        "prevResult": BRIDGE_RESULT_JSON,
    }
    c = parse_config(json.dumps(doc).encode())
    assert c.runtime_config.mac == "00:11:22:33:44:66"
    assert c.prev_result == BRIDGE_RESULT
    assert c.plugin == {"sysctl": {"net.core.somaxconn": "500"}}


def test_spec_portmap_example() -> None:
    c = parse_config(
        conf(
            runtimeConfig={
                "portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]
            },
            prevResult=BRIDGE_RESULT_JSON,
        )
    )
    assert c.runtime_config.port_mappings == (PortMapping(8080, 80, "tcp"),)


def test_unknown_keys_are_kept_for_the_plugin_and_reserved_keys_are_not() -> None:
    c = parse_config(
        conf(
            whatever={"x": 1},
            capabilities={"portMappings": True},
            cniVersions=["1.0.0"],
            **{"cni.dev/future": 1, "cni.dev/valid-attachments": []},
        )
    )
    assert c.plugin == {"whatever": {"x": 1}}
    assert c.raw["cni.dev/future"] == 1


def test_disable_check_and_gc() -> None:
    c = parse_config(conf(disableCheck=True, disableGC=True))
    assert (c.disable_check, c.disable_gc) == (True, True)
    err = fails(7, parse_config, conf(disableCheck="true"))
    assert "disableCheck must be a boolean, not a string" in err.msg


@pytest.mark.parametrize(
    "stdin", [b"", b"{", b"nope", b"[1]", b'"x"', b"null", b"\xff\xfe\xfd", b'{"mtu": NaN}']
)
def test_stdin_that_is_not_a_json_object_is_code_6(stdin: bytes) -> None:
    err = fails(6, parse_config, stdin)
    assert err.msg.startswith("cannot decode network config")


@pytest.mark.parametrize("version", ["0.1.0", "0.2.0", "1.2.0", "1.1", "v1.1.0", "2.0.0"])
def test_unsupported_version_is_code_1_with_the_supported_list(version: str) -> None:
    err = fails(1, parse_config, conf(cniVersion=version))
    assert repr(version) in err.msg
    assert err.details == "podnet supports CNI versions 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"


def test_missing_or_non_string_version_is_code_1() -> None:
    assert "missing" in fails(1, parse_config, b'{"name": "n", "type": "podnet"}').msg
    assert "must be a string" in fails(1, parse_config, conf(cniVersion=1.1)).msg


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_every_supported_version_parses(version: str) -> None:
    assert parse_config(conf(cniVersion=version)).cni_version == version


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"name": None}, "name is missing"),
        ({"name": ""}, "name is missing"),
        ({"name": "db net"}, "name is 'db net'"),
        ({"name": "-db"}, "name is '-db'"),
        ({"name": "a/b"}, "name is 'a/b'"),
        ({"name": 7}, "name must be a string, not an integer"),
        ({"type": None}, "type is missing"),
        ({"type": "../podnet"}, "type is '../podnet'"),
        ({"type": "a\\b"}, "type is 'a\\\\b'"),
        ({"ipam": {"type": "/bin/host-local"}}, "ipam.type is '/bin/host-local'"),
        ({"ipam": "host-local"}, "ipam must be an object, not a string"),
        ({"dns": {"nameservers": "10.0.0.1"}}, "dns.nameservers must be a list"),
        ({"dns": {"search": [1]}}, "dns.search[0] must be a string, not an integer"),
        ({"runtimeConfig": []}, "runtimeConfig must be an object, not a list"),
    ],
)
def test_invalid_protocol_keys_are_code_7(keys: dict[str, Any], message: str) -> None:
    err = fails(7, parse_config, conf(**keys))
    assert err.msg.startswith("invalid network config: ")
    assert message in err.msg
    assert err.details


def test_null_reads_as_absent() -> None:
    raw = (
        b'{"cniVersion": "1.0.0", "name": "n", "type": "t", "ipam": null, "dns": null,'
        b' "prevResult": null, "runtimeConfig": {"portMappings": null, "mac": null}}'
    )
    c = parse_config(raw)
    assert c.ipam is None and c.dns is None and c.prev_result is None
    assert c.runtime_config.port_mappings == () and c.runtime_config.mac is None


# -- runtimeConfig and args (section 3; CONVENTIONS.md) ---------------------------


def test_port_mappings() -> None:
    c = parse_config(
        conf(
            runtimeConfig={
                "portMappings": [
                    {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
                    {"hostPort": 8000, "containerPort": 8001, "protocol": "UDP"},
                    {"hostPort": 53, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"},
                    {"hostPort": 9090, "containerPort": 90, "hostIP": ""},
                ]
            }
        )
    )
    assert c.runtime_config.port_mappings == (
        PortMapping(8080, 80, "tcp"),
        PortMapping(8000, 8001, "udp"),
        PortMapping(53, 53, "udp", addr("127.0.0.1")),
        PortMapping(9090, 90, "tcp"),
    )


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"containerPort": 80}, "portMappings[0].hostPort is missing"),
        ({"hostPort": 8080}, "portMappings[0].containerPort is missing"),
        ({"hostPort": "8080", "containerPort": 80}, "hostPort must be an integer, not a string"),
        ({"hostPort": 0, "containerPort": 80}, "hostPort is 0, out of range 1-65535"),
        ({"hostPort": 8080, "containerPort": 65536}, "containerPort is 65536, out of range"),
        ({"hostPort": 8080, "containerPort": 80, "protocol": "sctp"}, "protocol is 'sctp'"),
        ({"hostPort": 8080, "containerPort": 80, "hostIP": "localhost"}, "hostIP is 'localhost'"),
        ({"hostPort": True, "containerPort": 80}, "hostPort must be an integer, not a boolean"),
    ],
)
def test_bad_port_mappings_are_code_7(mapping: dict[str, Any], message: str) -> None:
    err = fails(7, parse_config, conf(runtimeConfig={"portMappings": [mapping]}))
    assert "runtimeConfig.portMappings[0]" in err.msg and message in err.msg


def test_port_mappings_that_clash_are_code_7() -> None:
    maps: list[dict[str, Any]] = [
        {"hostPort": 8080, "containerPort": 80},
        {"hostPort": 8080, "containerPort": 81, "hostIP": "127.0.0.1"},
    ]
    err = fails(7, parse_config, conf(runtimeConfig={"portMappings": maps}))
    assert "portMappings[1]" in err.msg and "8080" in err.msg
    maps[1]["protocol"] = "udp"
    assert (
        len(parse_config(conf(runtimeConfig={"portMappings": maps})).runtime_config.port_mappings)
        == 2
    )


def test_runtime_ips_mac_dns_and_the_rest() -> None:
    rc = parse_config(
        conf(
            runtimeConfig={
                "ips": ["192.168.0.1", "10.10.0.1/24", "3ffe:ffff:0:01ff::2"],
                "mac": "C2:11:22:33:44:55",
                "dns": {
                    "servers": ["8.8.8.8"],
                    "searches": ["corp.example"],
                    "options": ["ndots:2"],
                },
                "bandwidth": {"ingressRate": 2048},
            }
        )
    ).runtime_config
    assert rc.ips == (
        RequestedIP(addr("192.168.0.1")),
        RequestedIP(addr("10.10.0.1"), 24),
        RequestedIP(addr("3ffe:ffff:0:1ff::2")),
    )
    assert [str(i) for i in rc.ips] == ["192.168.0.1", "10.10.0.1/24", "3ffe:ffff:0:1ff::2"]
    assert rc.mac == "c2:11:22:33:44:55"
    assert rc.dns is not None and rc.dns.servers == ("8.8.8.8",) and rc.dns.options == ("ndots:2",)
    assert rc.raw["bandwidth"] == {"ingressRate": 2048}


@pytest.mark.parametrize(
    ("runtime_config", "message"),
    [
        ({"ips": ["10.0.0.300"]}, "runtimeConfig.ips[0] is '10.0.0.300'"),
        ({"ips": ["10.0.0.1/33"]}, "runtimeConfig.ips[0] is '10.0.0.1/33'"),
        ({"ips": "10.0.0.1"}, "runtimeConfig.ips must be a list"),
        ({"mac": "c2:11:22:33:44"}, "runtimeConfig.mac is 'c2:11:22:33:44'"),
        ({"mac": "01:00:5e:00:00:01"}, "multicast"),
    ],
)
def test_bad_runtime_values_are_code_7(runtime_config: dict[str, Any], message: str) -> None:
    assert message in fails(7, parse_config, conf(runtimeConfig=runtime_config)).msg


def test_args_cni_labels_and_ips() -> None:
    args = {
        "cni": {
            "labels": [
                {"key": "app", "value": "myapp"},
                {"key": 1},
                "junk",
                {"key": "env", "value": "prod"},
            ],
            "ips": ["10.2.2.42/24", "2001:db8::5"],
        },
        "other": True,
    }
    a = parse_config(conf(args=args)).args
    assert a.labels == {"app": "myapp", "env": "prod"}
    assert a.ips == (RequestedIP(addr("10.2.2.42"), 24), RequestedIP(addr("2001:db8::5")))
    assert a.raw == args
    assert "args.cni.ips[0]" in fails(7, parse_config, conf(args={"cni": {"ips": ["x"]}})).msg


def test_args_outside_the_cni_namespace_are_metadata() -> None:
    # spec 0.4.0's own example passes args.labels as an object
    a = parse_config(conf(args={"labels": {"appVersion": "1.0"}})).args
    assert a.labels == {} and a.raw == {"labels": {"appVersion": "1.0"}}
    assert parse_config(conf(args={"cni": {"labels": "x"}})).args.labels == {}


def test_requested_ips_precedence() -> None:
    inv = parse_env(env(CNI_ARGS="IP=10.1.0.9,10.1.0.10/16"))
    both = parse_config(
        conf(runtimeConfig={"ips": ["10.1.0.7"]}, args={"cni": {"ips": ["10.1.0.8"]}})
    )
    assert requested_ips(both, inv) == (RequestedIP(addr("10.1.0.7")),)
    args_only = parse_config(conf(args={"cni": {"ips": ["10.1.0.8"]}}))
    assert requested_ips(args_only, inv) == (RequestedIP(addr("10.1.0.8")),)
    plain = parse_config(conf())
    assert requested_ips(plain, inv) == (
        RequestedIP(addr("10.1.0.9")),
        RequestedIP(addr("10.1.0.10"), 16),
    )
    assert requested_ips(plain, parse_env(env())) == ()
    assert "IP=" in fails(4, requested_ips, plain, parse_env(env(CNI_ARGS="IP=nope"))).msg


# -- which commands a configuration allows (section 2) ----------------------------


def _request(command: str, version: str, **keys: Any) -> tuple[Invocation, NetConf]:
    inv = parse_env({**ADD_ENV, "CNI_COMMAND": command, "CNI_PATH": "/opt/cni/bin"})
    return inv, parse_config(conf(cniVersion=version, **keys))


@pytest.mark.parametrize(
    ("command", "version", "code"),
    [
        ("ADD", "0.3.0", None),
        ("DEL", "0.3.1", None),
        ("CHECK", "0.3.1", 1),
        ("CHECK", "0.4.0", None),
        ("GC", "1.0.0", 1),
        ("GC", "1.1.0", None),
        ("STATUS", "0.4.0", 1),
        ("STATUS", "1.1.0", None),
    ],
)
def test_check_request_versions(command: str, version: str, code: int | None) -> None:
    inv, c = _request(command, version, prevResult=BRIDGE_RESULT_JSON)
    if code is None:
        check_request(inv, c)
    else:
        err = fails(code, check_request, inv, c)
        assert f"does not allow {command}" in err.msg


def test_check_needs_prev_result() -> None:
    inv, c = _request("CHECK", "1.1.0")
    assert "prevResult" in fails(7, check_request, inv, c).msg


# -- GC (section 2 GC) ------------------------------------------------------------


def test_gc_valid_attachments_new_key() -> None:
    items = [{"containerID": "a1", "ifname": "eth0"}, {"containerID": "b2", "ifname": "net1"}]
    c = parse_config(conf(**{"cni.dev/valid-attachments": items}))
    assert valid_attachments(c) == {("a1", "eth0"), ("b2", "net1")}


def test_gc_valid_attachments_old_key_of_the_spec_v1_1_0_tag() -> None:
    c = parse_config(conf(**{"cni.dev/attachments": [{"containerID": "a1", "ifname": "eth0"}]}))
    assert valid_attachments(c) == {("a1", "eth0")}


def test_gc_keeps_the_union_of_both_keys() -> None:
    c = parse_config(
        conf(
            **{
                "cni.dev/valid-attachments": [{"containerID": "a1", "ifname": "eth0"}],
                "cni.dev/attachments": [{"containerID": "b2", "ifname": "eth0"}],
            }
        )
    )
    assert valid_attachments(c) == {("a1", "eth0"), ("b2", "eth0")}


def test_gc_empty_list_means_nothing_is_valid() -> None:
    assert valid_attachments(parse_config(conf(**{"cni.dev/valid-attachments": []}))) == set()


def test_gc_without_a_list_is_refused() -> None:
    err = fails(7, valid_attachments, parse_config(conf()))
    assert "cni.dev/valid-attachments" in err.msg


@pytest.mark.parametrize(
    "items",
    [[{"containerID": "a"}], [{"ifname": "eth0"}], ["a/eth0"], {"containerID": "a", "ifname": "e"}],
)
def test_gc_malformed_attachments_are_code_7(items: Any) -> None:
    err = fails(7, parse_config, conf(**{"cni.dev/valid-attachments": items}))
    assert "cni.dev/valid-attachments" in err.msg


# -- results: golden JSON from the spec's examples --------------------------------

# Spec 1.1.0 appendix, "Add example": the bridge plugin's result.
BRIDGE_RESULT = Result(
    interfaces=(
        Interface("cni0", mac="00:11:22:33:44:55"),
        Interface("veth3243", mac="55:44:33:22:11:11"),
        Interface("eth0", mac="99:88:77:66:55:44", sandbox="/var/run/netns/blue"),
    ),
    ips=(IPConfig(cidr("10.1.0.5/16"), addr("10.1.0.1"), 2),),
    routes=(Route(net("0.0.0.0/0")),),
    dns=DNS(nameservers=("10.1.0.1",)),
)
_INTERFACES_JSON = [
    {"name": "cni0", "mac": "00:11:22:33:44:55"},
    {"name": "veth3243", "mac": "55:44:33:22:11:11"},
    {"name": "eth0", "mac": "99:88:77:66:55:44", "sandbox": "/var/run/netns/blue"},
]
BRIDGE_RESULT_JSON = {
    "ips": [{"address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 2}],
    "routes": [{"dst": "0.0.0.0/0"}],
    "interfaces": _INTERFACES_JSON,
    "dns": {"nameservers": ["10.1.0.1"]},
}


def _golden(version: str) -> dict[str, Any]:
    ip: dict[str, Any] = {"address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 2}
    if version < "1.0.0":
        ip = {"version": "4", **ip}
    return {
        "cniVersion": version,
        "interfaces": _INTERFACES_JSON,
        "ips": [ip],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {"nameservers": ["10.1.0.1"]},
    }


GOLDEN = {
    "0.3.1": {
        "cniVersion": "0.3.1",
        "interfaces": _INTERFACES_JSON,
        "ips": [{"version": "4", "address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 2}],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {"nameservers": ["10.1.0.1"]},
    },
    "0.4.0": {
        "cniVersion": "0.4.0",
        "interfaces": _INTERFACES_JSON,
        "ips": [{"version": "4", "address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 2}],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {"nameservers": ["10.1.0.1"]},
    },
    "1.0.0": {
        "cniVersion": "1.0.0",
        "interfaces": _INTERFACES_JSON,
        "ips": [{"address": "10.1.0.5/16", "gateway": "10.1.0.1", "interface": 2}],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {"nameservers": ["10.1.0.1"]},
    },
}


@pytest.mark.parametrize("version", sorted(GOLDEN))
def test_golden_results(version: str) -> None:
    assert BRIDGE_RESULT.to_json(version) == GOLDEN[version]
    assert Result.from_json(GOLDEN[version]) == BRIDGE_RESULT
    assert GOLDEN[version] == _golden(version)


@pytest.mark.parametrize("source", sorted(GOLDEN))
@pytest.mark.parametrize("target", SUPPORTED_VERSIONS)
def test_results_convert_between_every_pair_of_versions(source: str, target: str) -> None:
    assert Result.from_json(GOLDEN[source]).to_json(target) == _golden(target)


def test_0_3_0_writes_ips_not_the_typo_ip() -> None:
    out = BRIDGE_RESULT.to_json("0.3.0")
    assert "ip" not in out and out["ips"][0]["version"] == "4"


def test_spec_0_4_0_tuning_prev_result() -> None:
    # spec-v0.4.0, "Network configuration list runtime examples", with its
    # trailing commas removed: no gateway, no routes, a /32.
    doc = {
        "cniVersion": "0.4.0",
        "name": "dbnet",
        "type": "tuning",
        "sysctl": {"net.core.somaxconn": "500"},
        "prevResult": {
            "ips": [{"version": "4", "address": "10.0.0.5/32", "interface": 2}],
            "interfaces": _INTERFACES_JSON,
            "dns": {"nameservers": ["10.1.0.1"]},
        },
    }
    prev = parse_config(json.dumps(doc).encode()).prev_result
    assert prev is not None
    assert prev.ips == (IPConfig(cidr("10.0.0.5/32"), None, 2),)
    assert prev.routes == ()
    assert prev.to_json("0.4.0")["ips"] == [
        {"version": "4", "address": "10.0.0.5/32", "interface": 2}
    ]


def test_ipam_abbreviated_result() -> None:
    # Spec 1.1.0 appendix: what host-local returns to the bridge plugin.
    ipam = {
        "ips": [{"address": "10.1.0.5/16", "gateway": "10.1.0.1"}],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {"nameservers": ["10.1.0.1"]},
    }
    r = Result.from_json(ipam, default_version="1.1.0")
    assert r.interfaces == () and r.ips == (IPConfig(cidr("10.1.0.5/16"), addr("10.1.0.1")),)
    assert r.to_json("1.1.0") == {"cniVersion": "1.1.0", "interfaces": [], **ipam}


# A result using every field 1.1.0 added.
RICH = Result(
    interfaces=(
        Interface(
            "eth0", "aa:bb:cc:dd:ee:ff", 1450, "/run/netns/x", "/run/vhost.sock", "0000:04:00.5"
        ),
    ),
    ips=(IPConfig(cidr("fd00::5/64"), addr("fd00::1"), 0),),
    routes=(Route(net("fd00:1::/64"), addr("fd00::1"), 1400, 1360, 100, 254, 0),),
    dns=DNS(("fd00::53",), "example.internal", ("example.internal",), ("ndots:2",)),
)
RICH_JSON = {
    "cniVersion": "1.1.0",
    "interfaces": [
        {
            "name": "eth0",
            "mac": "aa:bb:cc:dd:ee:ff",
            "sandbox": "/run/netns/x",
            "mtu": 1450,
            "socketPath": "/run/vhost.sock",
            "pciID": "0000:04:00.5",
        }
    ],
    "ips": [{"address": "fd00::5/64", "gateway": "fd00::1", "interface": 0}],
    "routes": [
        {
            "dst": "fd00:1::/64",
            "gw": "fd00::1",
            "mtu": 1400,
            "advmss": 1360,
            "priority": 100,
            "table": 254,
            "scope": 0,
        }
    ],
    "dns": {
        "nameservers": ["fd00::53"],
        "domain": "example.internal",
        "search": ["example.internal"],
        "options": ["ndots:2"],
    },
}


def test_1_1_0_fields() -> None:
    assert RICH.to_json("1.1.0") == RICH_JSON
    assert Result.from_json(RICH_JSON) == RICH


@pytest.mark.parametrize("version", ["0.3.0", "0.3.1", "0.4.0", "1.0.0"])
def test_older_versions_drop_the_1_1_0_fields(version: str) -> None:
    out = RICH.to_json(version)
    assert out["interfaces"] == [
        {"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": "/run/netns/x"}
    ]
    assert out["routes"] == [{"dst": "fd00:1::/64", "gw": "fd00::1"}]
    assert ("version" in out["ips"][0]) is (version != "1.0.0")
    assert Result.from_json(out) == RICH.for_version(version)
    assert RICH.for_version("1.1.0") is RICH


def test_reading_is_lenient_about_fields_of_newer_versions() -> None:
    # A 1.0.0 peer (libcni uses one type for 1.0.0 and 1.1.0) may send them.
    assert Result.from_json({**RICH_JSON, "cniVersion": "1.0.0"}) == RICH


def test_result_versions() -> None:
    assert Result.from_json({}, default_version="0.4.0") == Result()
    assert Result.from_json({"cniVersion": "0.3.1"}, default_version="1.1.0") == Result()
    assert fails(1, Result.from_json, {}).code == 1
    assert "'0.2.0'" in fails(1, Result.from_json, {"cniVersion": "0.2.0", "ip4": {}}).msg
    assert fails(1, BRIDGE_RESULT.to_json, "0.2.0").details.startswith("podnet supports")


def test_empty_result_writes_every_key() -> None:
    assert Result().to_json("1.0.0") == {
        "cniVersion": "1.0.0",
        "interfaces": [],
        "ips": [],
        "routes": [],
        "dns": {},
    }


def test_route_dst_with_host_bits_is_masked() -> None:
    r = Result.from_json({"cniVersion": "1.0.0", "routes": [{"dst": "10.1.2.3/8"}]})
    assert r.routes == (Route(net("10.0.0.0/8")),)


def test_empty_optional_strings_read_as_absent() -> None:
    r = Result.from_json(
        {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "mac": "", "sandbox": ""}]}
    )
    assert r.interfaces == (Interface("eth0"),)


@pytest.mark.parametrize(
    ("result", "message"),
    [
        (
            {"ips": [{"address": "10.1.0.5"}]},
            "ips[0].address is '10.1.0.5', not an address in CIDR",
        ),
        ({"ips": [{"address": "10.1.0.5/33"}]}, "ips[0].address is '10.1.0.5/33'"),
        ({"ips": [{}]}, "ips[0].address is missing"),
        ({"ips": [{"address": "10.1.0.5/16", "gateway": "x"}]}, "ips[0].gateway is 'x'"),
        (
            {"ips": [{"address": "10.1.0.5/16", "gateway": "fd00::1"}]},
            "gateway is IPv6 but the entry is IPv4",
        ),
        ({"ips": [{"version": "6", "address": "10.1.0.5/16"}]}, "ips[0].version is '6'"),
        (
            {"ips": [{"address": "10.1.0.5/16", "interface": 0}]},
            "ips[0].interface is 0 but the result lists 0",
        ),
        (
            {"ips": [{"address": "10.1.0.5/16", "interface": -1}]},
            "ips[0].interface is -1, out of range",
        ),
        ({"ips": "10.1.0.5/16"}, "ips must be a list, not a string"),
        ({"ips": ["10.1.0.5/16"]}, "ips[0] must be an object, not a string"),
        ({"interfaces": [{"mac": "aa"}]}, "interfaces[0].name is missing"),
        ({"interfaces": [{"name": "eth0", "mtu": "1500"}]}, "interfaces[0].mtu must be an integer"),
        ({"routes": [{"dst": "default"}]}, "routes[0].dst is 'default'"),
        (
            {"routes": [{"dst": "0.0.0.0/0", "gw": "fd00::1"}]},
            "routes[0].gw is IPv6 but the entry is IPv4",
        ),
        (
            {"routes": [{"dst": "0.0.0.0/0", "scope": 256}]},
            "routes[0].scope is 256, out of range 0-255",
        ),
        ({"routes": [{"dst": "0.0.0.0/0", "table": 2**32}]}, "routes[0].table is 4294967296"),
        (
            {"routes": [{"dst": "0.0.0.0/0", "mtu": 1.5}]},
            "routes[0].mtu must be an integer, not a number",
        ),
        ({"dns": []}, "dns must be an object, not a list"),
    ],
)
def test_malformed_results_are_code_6_naming_the_key(result: dict[str, Any], message: str) -> None:
    err = fails(6, Result.from_json, {"cniVersion": "1.1.0", **result})
    assert err.msg.startswith("cannot decode result: ")
    assert message in err.msg


def test_malformed_prev_result_names_its_path() -> None:
    err = fails(6, parse_config, conf(prevResult={"ips": [{"address": "nope"}]}))
    assert "prevResult.ips[0].address" in err.msg
    err = fails(1, parse_config, conf(prevResult={"cniVersion": "0.2.0"}))
    assert "prevResult.cniVersion" in err.msg


def test_prev_result_takes_the_configuration_version() -> None:
    legacy = {"ips": [{"version": "4", "address": "10.0.0.5/32"}]}
    c = parse_config(conf(cniVersion="0.3.1", prevResult=legacy))
    assert c.prev_result == Result(ips=(IPConfig(cidr("10.0.0.5/32")),))


# -- results: property-based round trips ------------------------------------------

uints = st.integers(0, 2**32 - 1)
texts = st.text(min_size=1, max_size=12)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


def addresses(draw: st.DrawFn, version: int) -> Any:
    return draw(st.ip_addresses(v=4) if version == 4 else st.ip_addresses(v=6))


@st.composite
def ip_configs(draw: st.DrawFn, n_interfaces: int) -> IPConfig:
    version = draw(st.sampled_from([4, 6]))
    ip = addresses(draw, version)
    prefix = draw(st.integers(0, 32 if version == 4 else 128))
    gateway = None if draw(st.booleans()) else addresses(draw, version)
    index = draw(maybe(st.integers(0, n_interfaces - 1))) if n_interfaces else None
    return IPConfig(ipaddress.ip_interface((ip, prefix)), gateway, index)


@st.composite
def routes(draw: st.DrawFn, rich: bool) -> Route:
    version = draw(st.sampled_from([4, 6]))
    ip = addresses(draw, version)
    dst = ipaddress.ip_network(
        (ip, draw(st.integers(0, 32 if version == 4 else 128))), strict=False
    )
    gw = None if draw(st.booleans()) else addresses(draw, version)
    if not rich:
        return Route(dst, gw)
    return Route(
        dst,
        gw,
        mtu=draw(maybe(uints)),
        advmss=draw(maybe(uints)),
        priority=draw(maybe(uints)),
        table=draw(maybe(uints)),
        scope=draw(maybe(st.integers(0, 255))),
    )


@st.composite
def results(draw: st.DrawFn, rich: bool = True) -> Result:
    interfaces = draw(
        st.lists(
            st.builds(
                Interface,
                name=texts,
                mac=maybe(texts),
                mtu=maybe(uints) if rich else st.none(),
                sandbox=maybe(texts),
                socket_path=maybe(texts) if rich else st.none(),
                pci_id=maybe(texts) if rich else st.none(),
            ),
            max_size=3,
        )
    )
    n = len(interfaces)
    dns = st.builds(
        DNS,
        nameservers=st.lists(texts, max_size=2).map(tuple),
        domain=maybe(texts),
        search=st.lists(texts, max_size=2).map(tuple),
        options=st.lists(texts, max_size=2).map(tuple),
    )
    return Result(
        interfaces=tuple(interfaces),
        ips=tuple(draw(st.lists(ip_configs(n), max_size=3))),
        routes=tuple(draw(st.lists(routes(rich), max_size=3))),
        dns=draw(dns),
    )


def _through_json(doc: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(doc))
    return loaded


@given(results())
def test_round_trip_in_1_1_0_keeps_every_field(result: Result) -> None:
    assert Result.from_json(_through_json(result.to_json("1.1.0"))) == result


@given(results(rich=False), st.sampled_from(SUPPORTED_VERSIONS))
def test_round_trip_in_any_version_keeps_what_it_defines(result: Result, version: str) -> None:
    doc = _through_json(result.to_json(version))
    assert doc["cniVersion"] == version
    assert Result.from_json(doc) == result


@given(results(), st.sampled_from(SUPPORTED_VERSIONS), st.sampled_from(SUPPORTED_VERSIONS))
def test_conversion_loses_only_what_the_narrower_version_lacks(
    result: Result, first: str, second: str
) -> None:
    via = Result.from_json(result.to_json(first)).to_json(second)
    narrowest = min(first, second)
    assert Result.from_json(via) == result.for_version(narrowest)


# -- podnet's plugin keys ---------------------------------------------------------


def test_network_mode() -> None:
    p = plugin(network="web", hairpinMode=True)
    assert p == PodnetPluginConf(network="web", hairpin_mode=True)
    assert not p.inline


@pytest.mark.parametrize(
    "key", ["bridge", "subnet", "subnets", "gateway", "ipMasq", "isGateway", "mtu"]
)
def test_network_excludes_inline_keys(key: str) -> None:
    value = {
        "bridge": "br0",
        "subnet": "10.0.0.0/24",
        "subnets": ["10.0.0.0/24"],
        "gateway": "10.0.0.1",
    }
    err = plugin_fails(7, network="web", **{key: value.get(key, 1500 if key == "mtu" else True)})
    assert f"invalid network config: {key} cannot be set together with 'network'" in err.msg
    assert f"remove {key!r}" in err.details


def test_network_name_must_be_a_podnet_name() -> None:
    err = plugin_fails(7, network="Web_1")
    assert err.msg.startswith("invalid network config: network is invalid")
    assert "lower-case" in err.details


@pytest.mark.parametrize(
    "ipam",
    [
        {"type": "host-local"},
        {"type": "podnet", "subnet": "10.0.0.0/24"},
        {"ranges": [[{"subnet": "10.0.0.0/24"}]]},
    ],
)
def test_network_excludes_ipam_allocation(ipam: dict[str, Any]) -> None:
    assert (
        "ipam cannot allocate for podnet network 'web'"
        in plugin_fails(7, network="web", ipam=ipam).msg
    )
    assert plugin(network="web", ipam={"type": "podnet"}).network == "web"


def test_inline_bridge_with_defaults_of_the_reference_bridge() -> None:
    p = plugin(bridge="cni0", subnet="10.88.0.0/16")
    assert p == PodnetPluginConf(
        bridge="cni0", subnets=(net("10.88.0.0/16"),), gateways=(addr("10.88.0.1"),)
    )
    assert p.inline and not (p.ip_masq or p.is_gateway or p.hairpin_mode)


def test_inline_bridge_every_key() -> None:
    p = plugin(
        subnets=["10.88.0.0/16", "fd00:88::/64"],
        gateway=["10.88.0.254", "fd00:88::fe"],
        ipMasq=True,
        isDefaultGateway=True,
        hairpinMode=True,
        mtu=9000,
    )
    assert p.bridge is None
    assert p.subnets == (net("10.88.0.0/16"), net("fd00:88::/64"))
    assert p.gateways == (addr("10.88.0.254"), addr("fd00:88::fe"))
    assert (p.ip_masq, p.is_gateway, p.is_default_gateway, p.hairpin_mode, p.mtu) == (
        True,
        True,
        True,
        True,
        9000,
    )


def test_single_gateway_applies_to_its_own_subnet() -> None:
    p = plugin(subnets=["10.88.0.0/16", "fd00:88::/64"], gateway="fd00:88::fe")
    assert p.gateways == (addr("10.88.0.1"), addr("fd00:88::fe"))


def test_subnets_from_host_local_shaped_ipam() -> None:
    legacy = plugin(
        ipam={"subnet": "10.1.0.0/16", "gateway": "10.1.0.254", "routes": [{"dst": "0.0.0.0/0"}]}
    )
    assert legacy.subnets == (net("10.1.0.0/16"),) and legacy.gateways == (addr("10.1.0.254"),)
    assert legacy.routes == (Route(net("0.0.0.0/0")),)
    ranges = plugin(
        ipam={
            "type": "podnet",
            "ranges": [
                [{"subnet": "10.1.0.0/16"}],
                [{"subnet": "fd00::/64", "gateway": "fd00::fe"}],
            ],
        }
    )
    assert ranges.subnets == (net("10.1.0.0/16"), net("fd00::/64"))
    assert ranges.gateways == (addr("10.1.0.1"), addr("fd00::fe"))
    assert ranges.ipam_plugin is None


def test_delegated_ipam() -> None:
    p = plugin(bridge="cni0", isGateway=True, ipam={"type": "host-local", "subnet": "10.1.0.0/16"})
    assert p.ipam_plugin == "host-local" and p.subnets == () and p.gateways == ()
    assert p.is_gateway and p.routes == ()
    err = plugin_fails(7, subnet="10.1.0.0/16", ipam={"type": "dhcp"})
    assert "subnet cannot be set when ipam.type is 'dhcp'" in err.msg
    assert "set it to 'podnet'" in err.details


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({}, "subnet is missing"),
        ({"subnet": "10.0.0.1/24"}, "subnet is invalid: subnet '10.0.0.1/24' is not valid"),
        ({"subnet": "10.0.0.0/31"}, "subnet is invalid: subnet 10.0.0.0/31 is too small"),
        ({"subnet": 10}, "subnet must be a string, not an integer"),
        ({"subnets": []}, "subnets is empty"),
        ({"subnets": ["10.0.0.0/24", "10.1.0.0/24"]}, "subnets[1] is a second IPv4 subnet"),
        (
            {"subnet": "10.0.0.0/24", "subnets": ["10.1.0.0/24"]},
            "subnets and 'subnet' both give subnets",
        ),
        (
            {"subnet": "10.0.0.0/24", "ipam": {"ranges": [[{"subnet": "10.1.0.0/24"}]]}},
            "subnet and 'ipam.ranges' both give subnets",
        ),
        (
            {"subnet": "10.0.0.0/24", "gateway": "10.1.0.1"},
            "gateway is 10.1.0.1, not a host address of 10.0.0.0/24",
        ),
        (
            {"subnet": "10.0.0.0/24", "gateway": "10.0.0.0"},
            "gateway is 10.0.0.0, not a host address",
        ),
        (
            {"subnet": "10.0.0.0/24", "gateway": "10.0.0.255"},
            "gateway is 10.0.0.255, not a host address",
        ),
        ({"subnet": "10.0.0.0/24", "gateway": "gw"}, "gateway is 'gw', not an IP address"),
        (
            {"subnet": "10.0.0.0/24", "gateway": ["10.0.0.1", "10.0.0.2"]},
            "gateway is a second gateway",
        ),
        (
            {"ipam": {"subnet": "10.0.0.0/24"}, "gateway": "10.0.0.1"},
            "gateway cannot be set when subnets come",
        ),
        (
            {"ipam": {"ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": "10.1.0.0/24"}]]}},
            "ipam.ranges[0] must be a list of one",
        ),
        ({"ipam": {"ranges": [{"subnet": "10.0.0.0/24"}]}}, "ipam.ranges[0] must be a list of one"),
        ({"ipam": {"ranges": [[{"gateway": "10.0.0.1"}]]}}, "ipam.ranges[0][0].subnet is missing"),
        ({"ipam": {"ranges": []}}, "ipam.ranges is empty"),
        ({"ipam": {"subnet": "10.0.0.0/24", "gateway": "10.9.0.1"}}, "ipam.gateway is 10.9.0.1"),
        (
            {"ipam": {"ranges": [[{"subnet": "10.0.0.0/24", "gateway": "x"}]]}},
            "ipam.ranges[0][0].gateway is 'x'",
        ),
        (
            {"ipam": {"subnet": "10.0.0.0/24", "routes": [{"dst": "x"}]}},
            "ipam.routes[0].dst is 'x'",
        ),
        ({"subnet": "10.0.0.0/24", "bridge": "a-very-long-bridge"}, "bridge is invalid"),
        ({"subnet": "10.0.0.0/24", "bridge": "br 0"}, "bridge is invalid"),
        ({"subnet": "10.0.0.0/24", "mtu": 100}, "mtu is 100, out of range 576-65535"),
        ({"subnet": "10.0.0.0/24", "mtu": 70000}, "mtu is 70000, out of range 576-65535"),
        ({"subnet": "fd00::/64", "mtu": 1000}, "mtu is 1000, below IPv6's minimum"),
        ({"subnet": "10.0.0.0/24", "ipMasq": "yes"}, "ipMasq must be a boolean, not a string"),
    ],
)
def test_invalid_podnet_keys_are_code_7(keys: dict[str, Any], message: str) -> None:
    err = plugin_fails(7, **keys)
    assert err.msg.startswith("invalid network config: ")
    assert message in err.msg
    assert err.details, "every error says how to fix it"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("vlan", 100),
        ("vlanTrunk", [{"id": 101}]),
        ("promiscMode", True),
        ("preserveDefaultVlan", False),
        ("macspoofchk", True),
        ("forceAddress", True),
        ("disableContainerInterface", True),
        ("portIsolation", True),
    ],
)
def test_bridge_features_podnet_lacks_are_code_2_with_key_and_value(key: str, value: Any) -> None:
    err = plugin_fails(2, subnet="10.0.0.0/24", **{key: value})
    assert err.msg == f"unsupported field: {key}={json.dumps(value)}"
    assert "reference bridge plugin" in err.details


def test_bridge_features_at_their_default_are_fine() -> None:
    p = plugin(
        subnet="10.0.0.0/24", vlan=0, promiscMode=False, preserveDefaultVlan=True, vlanTrunk=[]
    )
    assert p.subnets == (net("10.0.0.0/24"),)


@pytest.mark.parametrize("key", ["rangeStart", "rangeEnd"])
def test_host_local_range_limits_are_code_2(key: str) -> None:
    err = plugin_fails(2, ipam={"ranges": [[{"subnet": "10.0.0.0/24", key: "10.0.0.10"}]]})
    assert err.msg == f'unsupported field: ipam.ranges[0][0].{key}="10.0.0.10"'
    err = plugin_fails(2, ipam={"subnet": "10.0.0.0/24", key: "10.0.0.10"})
    assert err.msg == f'unsupported field: ipam.{key}="10.0.0.10"'


def test_podman_default_conflist_with_podnet() -> None:
    # podman's default CNI network, with "type": "podnet" in place of "bridge".
    p = plugin(
        cniVersion="0.4.0",
        bridge="cni-podman0",
        isGateway=True,
        ipMasq=True,
        hairpinMode=True,
        ipam={
            "type": "podnet",
            "routes": [{"dst": "0.0.0.0/0"}],
            "ranges": [[{"subnet": "10.88.0.0/16", "gateway": "10.88.0.1"}]],
        },
    )
    assert p == PodnetPluginConf(
        bridge="cni-podman0",
        subnets=(net("10.88.0.0/16"),),
        gateways=(addr("10.88.0.1"),),
        ip_masq=True,
        is_gateway=True,
        hairpin_mode=True,
        routes=(Route(net("0.0.0.0/0")),),
    )
