"""The static half of Asterisk's configuration that Switchboard's realtime rows need.

Realtime dialplan rows are only reached from a static context holding a `switch =>
Realtime/@extensions` line; PJSIP reads the realtime tables only when `sorcery.conf` says so;
trunks are static endpoints recognised by source address. `switchboard pbx config` writes
these files for the enterprises in the directory (docs/PBX_SETUP.md walks through them):

- `pjsip.conf`: transports, the Teams trunk (Microsoft's SIP proxies) and the PSTN trunk,
  each `identify_by=ip` so no SIP user name can ever be taken for a trunk;
- `extensions.conf`: calls from the PSTN (every form of a direct number), from Teams (the
  caller found by number), each enterprise's dialling context and its route to the PSTN with
  the caller ID each user's settings ask for;
- `extconfig.conf`, `sorcery.conf`, `res_pgsql.conf`: the realtime mappings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import phonenumbers

from services.config import PbxTrunkSettings
from services.errors import ValidationError
from services.pbx.asterisk import DIAL_VARIABLE, PAI_VARIABLE, PSTN_TRUNK, TEAMS_TRUNK
from services.pbx.lines import (
    PREFIX,
    ddi_context,
    dial_context,
    extension_context,
    identity_context,
    outbound_context,
    ring_context,
)

FROM_PSTN = f"{PREFIX}-from-pstn"
FROM_TEAMS = f"{PREFIX}-from-teams"
ALL_DDIS = f"{PREFIX}-ddi"
ALL_IDENTITIES = f"{PREFIX}-id"
UNALLOCATED = f"{PREFIX}-unallocated"
PRESENT = f"{PREFIX}-present"
TRANSPORTS = (f"{PREFIX}-udp", f"{PREFIX}-tcp", f"{PREFIX}-tls")
REALTIME_FAMILIES = ("ps_endpoints", "ps_auths", "ps_aors", "extensions", "queues", "queue_members")
_DIAL_FORMATS = {"e164": "${EXTEN}", "e164-no-plus": "${EXTEN:1}"}
_TRANSPORTS = ("udp", "tcp", "tls")
_MEDIA_ENCRYPTION = ("sdes", "no")
HEADER = "; Written by `switchboard pbx config`; run it again rather than editing by hand.\n"


@dataclass(frozen=True)
class EnterpriseDialplan:
    """What the static dialplan needs to know about one enterprise."""

    enterprise_id: int
    name: str
    region: str


def _country_code(region: str) -> int:
    code = phonenumbers.country_code_for_region(region.upper())
    if not code:
        raise ValidationError(f"“{region}” is not a country code such as GB.", field="region")
    return int(code)


def _transport_name(protocol: str) -> str:
    if protocol not in _TRANSPORTS:
        raise ValidationError(
            f"The trunk transport is “{protocol}”; use udp, tcp or tls.", field="transport"
        )
    return f"{PREFIX}-{protocol}"


def _trunk(
    name: str,
    *,
    context: str,
    hosts: Sequence[str],
    protocol: str,
    match: Sequence[str],
    from_domain: str,
    qualify: bool,
    media_encryption: str = "no",
) -> str:
    transport = _transport_name(protocol)
    if media_encryption not in _MEDIA_ENCRYPTION:
        raise ValidationError(
            f"The trunk's media encryption is “{media_encryption}”; use sdes or no.",
            field="PBX_TEAMS_MEDIA_ENCRYPTION",
        )
    contacts = "".join(
        f"contact=sip:{host}" + (f";transport={protocol}" if protocol != "udp" else "") + "\n"
        for host in hosts
    )
    return (
        f"[{name}]\n"
        "type=endpoint\n"
        f"transport={transport}\n"
        f"context={context}\n"
        "disallow=all\n"
        "allow=alaw,ulaw,g722\n"
        f"aors={name}\n"
        "direct_media=no\n"
        "rtp_symmetric=yes\n"
        # Recognised by source address only: a SIP user name never selects a trunk.
        "identify_by=ip\n"
        # Caller ID towards the trunk comes from the dialplan (per user), never from here.
        "send_pai=no\n"
        "send_rpid=no\n"
        "trust_id_inbound=no\n"
        "trust_id_outbound=no\n"
        + (f"from_domain={from_domain}\n" if from_domain else "")
        + (f"media_encryption={media_encryption}\n" if media_encryption != "no" else "")
        + "\n"
        f"[{name}]\n"
        "type=aor\n"
        f"{contacts}" + ("qualify_frequency=60\n" if qualify else "") + "\n"
        f"[{name}]\n"
        "type=identify\n"
        f"endpoint={name}\n" + "".join(f"match={address}\n" for address in match) + "\n"
    )


def pjsip_conf(trunks: PbxTrunkSettings, realm: str) -> str:
    """Transports and the two trunks; user endpoints come from the realtime tables."""
    if not trunks.pstn_hosts or not trunks.pstn_match:
        raise ValidationError(
            "Set PBX_PSTN_HOSTS (where calls to the PSTN go, host:port) and PBX_PSTN_MATCH "
            "(the carrier's source addresses) before writing the PBX configuration.",
            field="PBX_PSTN_HOSTS",
        )
    protocols = {"udp", "tcp", trunks.teams_transport, trunks.pstn_transport}
    text = HEADER + (
        "[global]\n"
        "type=global\n"
        # No "anonymous": a request that names no endpoint meets the artificial endpoint (401).
        "endpoint_identifier_order=ip,username\n"
        f"default_realm={realm}\n"
        "user_agent=Switchboard PBX\n\n"
    )
    for protocol in _TRANSPORTS:
        if protocol not in protocols:
            continue
        text += f"[{_transport_name(protocol)}]\ntype=transport\nprotocol={protocol}\n"
        if protocol == "tls":
            if not (trunks.tls_cert_file and trunks.tls_key_file):
                raise ValidationError(
                    "A TLS trunk (Teams Direct Routing uses TLS) needs PBX_TLS_CERT_FILE and "
                    "PBX_TLS_KEY_FILE: the SBC certificate for PBX_SBC_FQDN.",
                    field="PBX_TLS_CERT_FILE",
                )
            text += (
                f"bind={trunks.tls_bind}\ncert_file={trunks.tls_cert_file}\n"
                f"priv_key_file={trunks.tls_key_file}\nmethod=tlsv1_2\n"
            )
            if trunks.sbc_fqdn:
                # Microsoft's proxies expect the SBC's FQDN in Contact and Via, where Asterisk
                # would put its IP address (res_pjsip_nat.c; no DNS look-up of the name).
                port = trunks.tls_bind.rpartition(":")[2]
                text += f"external_signaling_hostname={trunks.sbc_fqdn}\n"
                text += f"external_signaling_port={port}\n" if port.isdigit() else ""
        else:
            text += f"bind={trunks.sip_bind}\n"
        text += "\n"
    text += _trunk(
        TEAMS_TRUNK,
        context=FROM_TEAMS,
        hosts=trunks.teams_hosts,
        protocol=trunks.teams_transport,
        match=trunks.teams_match,
        from_domain=trunks.sbc_fqdn,
        qualify=True,
        media_encryption=trunks.teams_media_encryption,
    )
    text += _trunk(
        PSTN_TRUNK,
        context=FROM_PSTN,
        hosts=trunks.pstn_hosts,
        protocol=trunks.pstn_transport,
        match=trunks.pstn_match,
        from_domain="",
        qualify=False,
    )
    return text


def extensions_conf(trunks: PbxTrunkSettings, enterprises: Sequence[EnterpriseDialplan]) -> str:
    """The static dialplan around the realtime rows of these enterprises."""
    dial = _DIAL_FORMATS.get(trunks.pstn_dial_format)
    if dial is None:
        raise ValidationError(
            f"PBX_PSTN_DIAL_FORMAT is “{trunks.pstn_dial_format}”; use e164 or e164-no-plus.",
            field="PBX_PSTN_DIAL_FORMAT",
        )
    trunk_cc = _country_code(trunks.pstn_country)
    parts = [
        HEADER,
        "[general]\nstatic=yes\nwriteprotect=yes\nautofallthrough=yes\nclearglobalvars=no\n\n",
        "; Calls from the carrier: a direct number in any form it sends, made E.164.\n",
        f"[{FROM_PSTN}]\n",
        f"exten => _+X.,1,Goto({ALL_DDIS},${{EXTEN}},1)\n",
        f"exten => _X.,1,Goto({ALL_DDIS},+${{EXTEN}},1)\n",
        f"exten => _0X.,1,Goto({ALL_DDIS},+{trunk_cc}${{EXTEN:1}},1)\n",
        f"exten => _00X.,1,Goto({ALL_DDIS},+${{EXTEN:2}},1)\n\n",
        f"[{ALL_DDIS}]\n",
        *(f"include => {ddi_context(e.enterprise_id)}\n" for e in enterprises),
        f"include => {UNALLOCATED}\n\n",
        f"[{UNALLOCATED}]\n",
        "exten => _[+0-9].,1,Hangup(1)\n\n",
        "; Calls from Teams: the caller is a Switchboard user found by number, or refused.\n",
        f"[{FROM_TEAMS}]\n",
        "exten => _[+0-9*#].,1,Set(SB_CALLER=${CALLERID(num)})\n",
        ' same => n,ExecIf($["${SB_CALLER:0:1}" != "+"]?Set(SB_CALLER=+${SB_CALLER}))\n',
        f" same => n,GotoIf(${{DIALPLAN_EXISTS({ALL_IDENTITIES},${{SB_CALLER}},1)}}?known)\n",
        " same => n,Hangup(21)\n",
        f" same => n(known),Gosub({ALL_IDENTITIES},${{SB_CALLER}},1)\n",
        f" same => n,Goto(${{{DIAL_VARIABLE}}},${{EXTEN}},1)\n\n",
        f"[{ALL_IDENTITIES}]\n",
        *(f"include => {identity_context(e.enterprise_id)}\n" for e in enterprises),
        "\n",
        "; Caller ID towards the carrier: P-Asserted-Identity when the user's setting asks,\n",
        "; Privacy: id when the number is withheld (Asterisk then sends an anonymous From).\n",
        f"[{PRESENT}]\n",
        f'exten => s,1,GotoIf($["${{{PAI_VARIABLE}}}" = ""]?privacy)\n',
        " same => n,Set(PJSIP_INHERITABLE_HEADER(add,P-Asserted-Identity)="
        f"<tel:${{{PAI_VARIABLE}}}>)\n",
        ' same => n(privacy),GotoIf($["${CALLERID(pres):0:6}" != "prohib"]?done)\n',
        " same => n,Set(PJSIP_INHERITABLE_HEADER(add,Privacy)=id)\n",
        " same => n(done),Return()\n\n",
    ]
    for enterprise in enterprises:
        e = enterprise.enterprise_id
        cc = _country_code(enterprise.region)
        parts += [
            f"; --- {enterprise.name.replace(chr(10), ' ')} (enterprise {e})\n",
            *(
                f"[{context}]\nswitch => Realtime/@extensions\n\n"
                for context in (
                    extension_context(e),
                    ddi_context(e),
                    ring_context(e),
                    identity_context(e),
                )
            ),
            f"[{dial_context(e)}]\n",
            *(
                f"exten => {number},1,Gosub({PRESENT},s,1)\n"
                f" same => n,Dial(PJSIP/{number}@{PSTN_TRUNK})\n"
                for number in trunks.emergency_numbers
            ),
            f"include => {extension_context(e)}\n",
            f"include => {ddi_context(e)}\n",
            f"include => {outbound_context(e)}\n\n",
            f"[{outbound_context(e)}]\n",
            f"exten => _+X.,1,Gosub({PRESENT},s,1)\n",
            f" same => n,Dial(PJSIP/{dial}@{PSTN_TRUNK},120)\n",
            " same => n,Hangup()\n",
            "exten => _00X.,1,Goto(+${EXTEN:2},1)\n",
            f"exten => _0X.,1,Goto(+{cc}${{EXTEN:1}},1)\n\n",
        ]
    return "".join(parts)


def extconfig_conf() -> str:
    """Which realtime families Asterisk reads from PostgreSQL."""
    return (
        HEADER
        + "[settings]\n"
        + "".join(f"{family} => pgsql,general,{family}\n" for family in REALTIME_FAMILIES)
    )


def sorcery_conf() -> str:
    """PJSIP objects: trunks from pjsip.conf, users from the realtime tables."""
    return HEADER + (
        "[res_pjsip]\n"
        "endpoint=config,pjsip.conf,criteria=type=endpoint\n"
        "endpoint=realtime,ps_endpoints\n"
        "auth=config,pjsip.conf,criteria=type=auth\n"
        "auth=realtime,ps_auths\n"
        "aor=config,pjsip.conf,criteria=type=aor\n"
        "aor=realtime,ps_aors\n\n"
        "[res_pjsip_endpoint_identifier_ip]\n"
        "identify=config,pjsip.conf,criteria=type=identify\n"
    )


def res_pgsql_conf(database_url: str) -> str:
    """How res_config_pgsql reaches the realtime database (holds its password: mode 0600)."""
    parsed = urlsplit(database_url)
    if not parsed.path.strip("/"):
        raise ValidationError("PBX_DATABASE_URL names no database.", field="PBX_DATABASE_URL")
    lines = [
        "[general]",
        f"dbhost={parsed.hostname or '127.0.0.1'}",
        f"dbport={parsed.port or 5432}",
        f"dbname={unquote(parsed.path.strip('/'))}",
        f"dbuser={unquote(parsed.username or '')}",
        f"dbpass={unquote(parsed.password or '')}",
        "requirements=warn",
    ]
    return HEADER + "\n".join(lines) + "\n"


def static_files(
    trunks: PbxTrunkSettings,
    realm: str,
    database_url: str,
    enterprises: Sequence[EnterpriseDialplan],
) -> dict[str, str]:
    """Every file `switchboard pbx config` writes, by name."""
    return {
        "pjsip.conf": pjsip_conf(trunks, realm),
        "extensions.conf": extensions_conf(trunks, enterprises),
        "extconfig.conf": extconfig_conf(),
        "sorcery.conf": sorcery_conf(),
        "res_pgsql.conf": res_pgsql_conf(database_url),
    }
