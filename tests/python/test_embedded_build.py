"""The SDK warns, like the CLI, when the embedded server it connects to runs
another build of yard than the `yard` it starts servers with (after a
rebuild or an upgrade the old server goes on serving the old code)."""
import json

from trainyard import fit


def test_the_sdk_names_a_server_of_another_build(home, capsys):
    fit._connect()  # starts this build's embedded server
    assert "another build" not in capsys.readouterr().err
    info_path = home.path / "server.json"
    info = json.loads(info_path.read_text())
    assert len(info.get("build", "")) >= 16, info
    try:
        info_path.write_text(json.dumps({**info, "build": "0" * 40}))  # as after an upgrade
        fit._connect()
        err = capsys.readouterr().err
        assert (f"trainyard: warning: the embedded server (pid {info['pid']}, {home.path}) "
                "runs another build") in err, err
        assert f"kill {info['pid']}" in err, err
    finally:
        info_path.write_text(json.dumps(info))
    fit._connect()
    assert "another build" not in capsys.readouterr().err
