"""
Configuration errors as a user meets them through statemeshd: syntax errors
located and shown with their line, @include problems named at the directive,
the size cap that keeps libconfig's quadratic scanner from stalling start-up,
and a configuration without endpoints (valid: the runtime starts and warns).
The messages themselves are covered case by case in test/unit/test_config.c.
"""

import subprocess
import time

import grpc
import pytest

from harness import Runtime, binary, free_port, int64, port_open, scaled, status_of

MAX_FILE_BYTES = 1 << 20        # CFG_MAX_FILE_BYTES


def check_config(path, stdin=None, timeout=15):
    return subprocess.run([str(binary("statemeshd")), "--check-config", str(path)], input=stdin,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          timeout=scaled(timeout))


def test_ten_mib_string_refused_fast(sandbox, require):
    """libconfig 1.5 takes > 20 s to scan a 10 MiB string; the file is refused unread."""
    require("statemeshd")
    conf = sandbox.path("huge.conf")
    text = 'runtime = { data_dir = "%s"; };\n' % ("x" * (10 << 20))
    conf.write_text(text)
    t0 = time.monotonic()
    p = check_config(conf)
    elapsed = time.monotonic() - t0
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr[:2000])
    assert elapsed < 2.0, "took %.1f s" % elapsed
    assert p.stderr.strip() == "%s: config file is %d bytes, over the limit of %d" % (
        conf, len(text), MAX_FILE_BYTES), p.stderr[:2000]


def test_syntax_error_located_and_shown(sandbox, require):
    """A missing ',' between endpoints: libconfig says line 8; the message points at line 7."""
    require("statemeshd")
    port = free_port()
    first = '  { functions = "a/*"; target = "unix:/tmp/sm-cfg-a.sock"; }'
    text = ("runtime = {\n"
            '  data_dir = "%s";\n' % sandbox.path("data") +
            '  ingress = "127.0.0.1:%d";\n' % port +
            "};\n"
            "\n"
            "endpoints = (\n" +
            first + "\n" +
            '  { functions = "b/*"; target = "unix:/tmp/sm-cfg-b.sock"; }\n'
            ");\n")
    rt = sandbox.runtime(config_text=text, port=port, start=False)
    rt.start(wait=False)
    assert rt.wait_exit(timeout=15) == 2
    lines = rt.log().splitlines()
    head = "%s:7: syntax error near '{': missing ',' at the end of line 7?" % rt.config_path
    assert head in lines, rt.log()
    i = lines.index(head)
    assert lines[i + 1] == "    " + first
    assert lines[i + 2] == "    " + " " * len(first) + "^"
    assert Runtime.READY not in rt.log()
    assert not port_open("127.0.0.1", port)


def test_include_errors_name_the_directive(sandbox, require):
    require("statemeshd")
    sandbox.path("confdir").mkdir()
    conf = sandbox.path("main.conf")
    conf.write_text('runtime = { log_level = "info"; };\n@include "missing.inc"\n'
                    '@include "confdir"\n')
    p = check_config(conf)
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    err = p.stderr.splitlines()
    d = conf.parent
    assert ('%s:2: @include "missing.inc": %s/missing.inc: cannot read: No such file or directory'
            % (conf, d)) in err, p.stderr
    assert '%s:3: @include "confdir": %s/confdir: is a directory, not a file' % (conf, d) in err, \
        p.stderr


def test_config_from_a_pipe(sandbox, require):
    """The main file is read once and handed to libconfig as text: `-c <(...)` works."""
    require("statemeshd")
    p = check_config("/dev/stdin", stdin='runtime = { log_level = "warn"; };\n')
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    assert "ok (0 endpoints" in p.stdout
    p = check_config("/dev/stdin", stdin="# " + "x" * MAX_FILE_BYTES + "\n")
    assert p.returncode == 2
    assert "/dev/stdin: config file is over the limit of %d bytes" % MAX_FILE_BYTES in p.stderr


def test_no_endpoints_starts_with_warning(sandbox, require):
    """Decision (config.h): no endpoints is valid; the runtime warns and refuses messages."""
    require("statemeshd")
    port = free_port()
    text = ("# no endpoints yet\n"
            "runtime = {\n"
            '  data_dir = "%s";\n' % sandbox.path("data") +
            '  ingress = "127.0.0.1:%d";\n' % port +
            "};\n")
    p = check_config(_write(sandbox, "noeps.conf", text))
    assert p.returncode == 0 and "ok (0 endpoints" in p.stdout, (p.stdout, p.stderr)
    rt = sandbox.runtime(config_text=text, port=port)
    cl = rt.client()
    assert cl.healthy()
    assert any("level=warn" in ln and "event=runtime.no_endpoints" in ln
               for ln in rt.log().splitlines()), rt.log()
    assert status_of(cl.send, "test/counter", "x", int64(1)) == grpc.StatusCode.NOT_FOUND


def _write(sandbox, name, text):
    path = sandbox.path(name)
    path.write_text(text)
    return path


@pytest.mark.parametrize("args,first", [
    (["--check-config"], "option '--check-config' requires an argument"),
    ([], "statemeshd: no configuration file (-c FILE)"),
    (["-c", "a.conf", "extra"], "statemeshd: unexpected argument 'extra'"),
    (["--bogus"], "unrecognized option '--bogus'"),
])
def test_usage_errors_are_two_lines(require, args, first):
    """A usage error says what is wrong and where help is, not the whole usage."""
    require("statemeshd")
    p = subprocess.run([str(binary("statemeshd"))] + args, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=scaled(15))
    assert p.returncode == 2, (p.returncode, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 2 and first in lines[0], p.stderr
    assert lines[1] == "run 'statemeshd --help' for usage", p.stderr
    assert p.stdout == ""
