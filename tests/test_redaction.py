"""Redaction (issue 3, test 5): planted secrets never reach any output file, look-alikes that
are not secrets are kept intact, and the user's settings extend the defaults."""

import json

from conftest import read_trace, spans

PEM_BODY = "MIIEowIBAAKCAQEA7q9sZbXyQpL3nJt0kHc5VwXr2sE4dA1mNoPqRsTuVwXyZaBcDeFg"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ."
    "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)

# Every string here must be absent from every output file.
SECRETS = {
    # argument names
    "password": "pw-Zq81xKvalue",
    "api_key": "ak-77Hdj2value",
    "secret": "sec-91kfmvalue",
    "access_token": "at-Kf02lavalue",
    "authorization": "authz-81jdvalue",
    "cookie": "ck-19sk2value",
    "private_key": "pk-11abcvalue",
    "ssn": "ssn-val-3value",
    "card_number": "cn-1111value",
    "cvv": "cvv-982value",
    "client_secret": "cs-1823value",
    # keyword argument collected in **kwargs
    "db_password": "kw-pw-3value",
    # nested dict keys
    "nested_password": "nested-pw-1value",
    "nested_api_key": "hdr-key-22value",
    "nested_refresh_token": "rt-981value",
    # by value, under innocent names
    "jwt": JWT,
    "bearer": "abcDEF123456ghiJKL789",
    "aws": "AKIAIOSFODNN7EXAMPLE",
    "github_ghp": "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
    "github_gho": "gho_16C7e42F292c6912E7710c838347Ae178B4b",
    "slack": "xoxb-123456789012-abcdefghijkl",
    "openai": "sk-proj-abcdefghij1234567890KLMNOP",
    "pem": PEM_BODY,
    "card": "4111111111111111",
    "card_spaces": "5500 0000 0000 0004",
    "card_dashes": "3782-822463-10005",
    "email": "alice.smith@example.org",
    "us_ssn": "123-45-6789",
    "url_password": "urlpass99",
    "bytes_bearer": "bytesTOKEN12345",
    "object_field": "objtok-55value",
    "card_int": "6011111111111117",
    # return values
    "return_token": "ret-tok-77value",
    "return_email": "bob@corp.example.com",
    # exception messages
    "exc_card": "4012888888881881",
    "exc_password": "hunter2xyzvalue",
    "exc_email": "carol@example.net",
}

# Every one of these must be kept as written.
LOOKALIKES = {
    "token_count": 5,
    "keyboard": "qwerty-layout",
    "author": "Jane Austen",
    "max_tokens": 128,
    "authority": "example.com",
    "primary_key": 42,
    "description": "a plain description",
    "spinner": "spinning",
    "sessions": 3,
    "not_a_card": "4111111111111112",
    "not_a_card_int": 1234567812345679,
    "uuid": "123e4567-e89b-12d3-a456-426614174000",
    "order": "ORDER-2024-000123",
    "price": "price: 1,234.56",
    "when": "2024-01-15T10:30:00Z",
    "sha": "9fceb02d0ae598e95dc970b74767f19372d61af8",
    "words": "scikit-learn and sk-learn are fine",
    "at_words": "user at example dot com",
    "version": "numpy==1.26.4",
    "ip": "192.168.1.10",
    "area_zero_id": "000-12-3456",
    "twelve_digits": "123456789012",
    "compass": "passage bypass compass",
}

PROGRAM = r"""
import dataclasses
import ferrotrace
ferrotrace.configure(
    output="trace.jsonl", exporter="jsonl,chrome", chrome_output="trace.chrome.json", capture="all"
)
S = __SECRETS__
L = __LOOKALIKES__

@dataclasses.dataclass
class Account:  # its own (generated) __repr__: the safe preview shows its fields
    api_token: str
    owner: str = "Jane Austen"

def login(password, api_key, secret, access_token, authorization, cookie, private_key, ssn,
          card_number, cvv, client_secret, **kwargs):
    return "ok"

def nested(config):
    return len(config)

def by_value(note, header, key_id, tokens, pem, cards, contact, ident, url, raw, account, number):
    return None

def fetch_token():
    return {"token": S["return_token"], "count": 1}

def whoami():
    return "logged in as " + S["return_email"]

def charge():
    raise ValueError("payment failed for card " + S["exc_card"])

def connect():
    raise PermissionError("login failed: password=" + S["exc_password"] + " for " + S["exc_email"])

def handled(exc):
    return type(exc).__name__

def lookalikes(token_count, keyboard, author, max_tokens, authority, primary_key, description,
               spinner, sessions, not_a_card, not_a_card_int, uuid, order, price, when, sha,
               words, at_words, version, ip, area_zero_id, twelve_digits, compass):
    return [uuid, order]

with ferrotrace.session("secrets"):
    login(S["password"], S["api_key"], S["secret"], S["access_token"], S["authorization"],
          S["cookie"], S["private_key"], S["ssn"], S["card_number"], S["cvv"], S["client_secret"],
          db_password=S["db_password"])
    nested({
        "user": {"name": "jane", "password": S["nested_password"]},
        "headers": {"X-Api-Key": S["nested_api_key"]},
        "auth": {"refresh_token": S["nested_refresh_token"]},
    })
    by_value(
        "jwt " + S["jwt"],
        "Authorization: Bearer " + S["bearer"],
        S["aws"],
        [S["github_ghp"], S["github_gho"], S["slack"], S["openai"]],
        "-----BEGIN RSA PRIVATE KEY-----\n" + S["pem"] + "\n-----END RSA PRIVATE KEY-----",
        (S["card"], S["card_spaces"], S["card_dashes"]),
        {"primary": S["email"], "id": S["us_ssn"]},
        S["us_ssn"],
        "https://admin:" + S["url_password"] + "@db.example.com/x",
        b"Bearer " + S["bytes_bearer"].encode(),
        Account(S["object_field"]),
        int(S["card_int"]),
    )
    fetch_token()
    whoami()
    for f in (charge, connect):
        try:
            f()
        except Exception as exc:
            handled(exc)
    lookalikes(**L)
ferrotrace.shutdown()
"""


def program() -> str:
    return PROGRAM.replace("__SECRETS__", repr(SECRETS)).replace("__LOOKALIKES__", repr(LOOKALIKES))


def forms(secret: str) -> set[str]:
    """The secret as written, JSON-escaped, and without separators (digits of a card)."""
    out = {secret, json.dumps(secret)[1:-1]}
    if any(c.isdigit() for c in secret):
        out.add(secret.replace(" ", "").replace("-", ""))
    return out


def test_planted_secrets_never_reach_any_output(runner):
    assert len(SECRETS) >= 30
    proc = runner.run(program())
    assert proc.returncode == 0, proc.stderr
    files = {name: (runner.tmp / name).read_text() for name in ("trace.jsonl", "trace.chrome.json")}
    records = [json.loads(line) for line in files["trace.jsonl"].splitlines()]
    json.loads(files["trace.chrome.json"])
    for name, text in files.items():
        for key, secret in SECRETS.items():
            for form in forms(secret):
                assert form not in text, f"{key} leaked into {name}"
    got = {s["qualname"]: s for s in spans(records)}
    login = got["login"]["args"]
    assert login.pop("**kwargs") == {"db_password": "[REDACTED]"}
    assert set(login.values()) == {"[REDACTED]"} and len(login) == 11
    assert got["nested"]["args"]["config"]["user"] == {"name": "jane", "password": "[REDACTED]"}
    assert got["fetch_token"]["return"] == {"token": "[REDACTED]", "count": 1}
    assert got["whoami"]["return"] == "logged in as [REDACTED]"
    assert got["charge"]["exception"]["message"] == "payment failed for card [REDACTED]"
    assert got["connect"]["exception"]["message"] == "login failed: password=[REDACTED] for [REDACTED]"
    assert got["by_value"]["args"]["account"] == {
        "__type__": "__main__.Account",
        "api_token": "[REDACTED]",
        "owner": "Jane Austen",
    }


def test_lookalikes_are_kept(runner):
    assert len(LOOKALIKES) >= 20
    proc = runner.run(program(), env={"FERROTRACE_MAX_ITEMS": "32"})
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in (runner.tmp / "trace.jsonl").read_text().splitlines()]
    got = {s["qualname"]: s for s in spans(records)}
    assert got["lookalikes"]["args"] == LOOKALIKES
    assert got["lookalikes"]["return"] == [LOOKALIKES["uuid"], LOOKALIKES["order"]]


EXTEND = """
import ferrotrace{auto}
{configure}
def send(customer_ref, note, contact):
    return note

with ferrotrace.session("extend"):
    send("cref-123", "order ACME-123456 shipped", "dave@example.com")
ferrotrace.shutdown()
"""


def test_user_keys_and_patterns_extend_the_defaults(runner):
    code = EXTEND.format(auto="", configure='ferrotrace.configure(output="trace.jsonl", capture="all")')
    env = {"FERROTRACE_REDACT_KEYS": "customer-ref", "FERROTRACE_REDACT_VALUES": r"ACME-[0-9]{6};;ZZZ-\d+"}
    got = spans(runner.trace(code, env=env))
    send = next(s for s in got if s["qualname"] == "send")
    assert send["args"] == {
        "customer_ref": "[REDACTED]",
        "note": "order [REDACTED] shipped",
        "contact": "[REDACTED]",
    }
    assert send["return"] == "order [REDACTED] shipped"


def test_malformed_redact_values_keeps_default_redaction_and_warns(runner):
    code = EXTEND.format(auto=".auto", configure="")
    env = {
        "FERROTRACE_OUTPUT": "trace.jsonl",
        "FERROTRACE_CAPTURE": "all",
        "FERROTRACE_REDACT_VALUES": r"([unclosed;;ACME-[0-9]{6}",
    }
    proc = runner.run(code, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "FERROTRACE_REDACT_VALUES" in proc.stderr
    assert "([unclosed" in proc.stderr
    text = (runner.tmp / "trace.jsonl").read_text()
    assert "dave@example.com" not in text
    assert "ACME-123456" not in text, "the user's valid pattern stays in force"
    send = next(s for s in spans([json.loads(line) for line in text.splitlines()]) if s["qualname"] == "send")
    assert send["args"]["contact"] == "[REDACTED]"
    assert send["args"]["note"] == "order [REDACTED] shipped"


def test_malformed_redact_values_is_an_error_in_the_api(runner):
    proc = runner.run(
        """
import ferrotrace
for pattern in ("([unclosed", "x*"):
    try:
        ferrotrace.configure(output="trace.jsonl", redact_values=pattern)
    except ValueError as exc:
        print("ValueError", "FERROTRACE_REDACT_VALUES" in str(exc) or "redact_values" in str(exc))
"""
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["ValueError", "True"] * 2


RECONFIGURED = """
import dataclasses
import ferrotrace

@dataclasses.dataclass
class Row:
    nickname: str
    password: str

def show(row):
    return {"nickname": row.nickname, "other": 1}

ferrotrace.configure(output="trace.jsonl", capture="all")
with ferrotrace.session("before"):
    for _ in range(3):
        show(Row("bob", "hunter2"))
ferrotrace.configure(output="trace.jsonl", capture="all", redact_keys="nickname")
with ferrotrace.session("after"):
    for _ in range(3):
        show(Row("bob", "hunter2"))
ferrotrace.shutdown()
"""


def test_keys_judged_once_are_judged_again_after_reconfiguring(runner):
    records = runner.trace(RECONFIGURED)
    sessions = {r["span_id"]: r["tag"] for r in records if r["type"] == "session_start"}
    shows = [(sessions[s["parent_span_id"]], s) for s in spans(records) if s["qualname"] == "show"]
    assert [tag for tag, _ in shows] == ["before"] * 3 + ["after"] * 3
    for tag, s in shows:
        hidden = "[REDACTED]" if tag == "after" else "bob"
        assert s["args"]["row"] == {"__type__": "__main__.Row", "nickname": hidden, "password": "[REDACTED]"}
        assert s["return"] == {"nickname": hidden, "other": 1}


SESSION_TEXT = r"""
import os, threading
import ferrotrace
ferrotrace.configure(exporter="jsonl,chrome,otlp", output="trace.jsonl",
                     chrome_output="trace.chrome.json", otlp_endpoint=os.environ["ENDPOINT"])

def work():
    return 1

def run():
    attrs = {"password": "hunter2-pw", "owner": "mail bob.secret@example.com",
             "tier": "gold"}
    with ferrotrace.session("order for alice.secret@example.com", attrs=attrs) as s:
        work()
    print(sorted(s.attrs.items()))

t = threading.Thread(target=run, name="worker ghp_" + "A" * 36)
t.start()
t.join()
ferrotrace.shutdown()
"""


def test_session_tags_attributes_and_thread_names_are_redacted(runner):
    """Everything of the program's text that reaches an exporter is redacted: a session's
    tag, its attributes (by key and by value) and the thread's name, in JSONL, Chrome trace
    and OTLP alike, and in what `Session.attrs` hands back."""
    from otlp_server import Server

    with Server().start() as server:
        proc = runner.run(SESSION_TEXT, env={"ENDPOINT": server.url()})
        assert proc.returncode == 0, proc.stderr
        bodies = [r.body.decode("latin-1") for r in server.requests]
    assert proc.stdout.strip() == str(
        [("owner", "mail [REDACTED]"), ("password", "[REDACTED]"), ("tier", "gold")]
    )
    outputs = {
        "jsonl": (runner.tmp / "trace.jsonl").read_text(),
        "chrome": (runner.tmp / "trace.chrome.json").read_text(),
        "otlp": "".join(bodies),
    }
    assert bodies, "nothing reached the collector"
    for name, text in outputs.items():
        for secret in ("hunter2-pw", "alice.secret", "bob.secret", "ghp_AAAA"):
            assert secret not in text, (name, secret)
    start = next(r for r in read_trace(runner.tmp / "trace.jsonl") if r["type"] == "session_start")
    assert start["tag"] == "order for [REDACTED]"
    assert start["attrs"] == {"password": "[REDACTED]", "owner": "mail [REDACTED]", "tier": "gold"}
