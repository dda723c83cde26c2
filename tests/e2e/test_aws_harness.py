"""The AWS test harness does what the AWS tests rely on: moto answers on
loopback and gives instances in the 127.1.1.0/24 subnet loopback addresses,
spot market options show as InstanceLifecycle spot, the fault proxy answers
chosen actions/types with EC2's error document and counts requests, moto's
IAM enforcement refuses unknown keys and missing permissions, and
ec2-metadata-mock serves IMDSv2 and spot notices."""
import http.client
import ipaddress
import json
import sys
import time
import urllib.parse
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import aws_harness as h  # noqa: E402

pytestmark = pytest.mark.skipif(h.skip_reason() is not None, reason=str(h.skip_reason()))


@pytest.fixture(scope="module")
def moto():
    with h.Moto() as m:
        yield m


def _launch(ec2, image, subnet, instance_type="t3.micro", **kw):
    return ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType=instance_type,
                             SubnetId=subnet, **kw)["Instances"][0]


def test_loopback_subnet_gives_loopback_addresses(moto):
    ec2 = moto.client()
    _, subnet = h.loopback_subnet(ec2)
    spot = {"MarketType": "spot", "SpotOptions": {"SpotInstanceType": "one-time",
                                                  "InstanceInterruptionBehavior": "terminate"}}
    inst = _launch(ec2, moto.any_image(), subnet, InstanceMarketOptions=spot)
    address = ipaddress.ip_address(inst["PrivateIpAddress"])
    assert address in ipaddress.ip_network("127.1.1.0/24") and address.is_loopback
    assert inst["InstanceLifecycle"] == "spot"


def test_fault_proxy_answers_chosen_type_and_counts(moto):
    ec2 = moto.client()
    _, subnet = h.loopback_subnet(ec2)
    with h.FaultProxy(moto.url) as proxy:
        proxy.fail("RunInstances", instance_type="p2.xlarge", **h.CAPACITY)
        via_proxy = moto.client(url=proxy.url)
        from botocore.exceptions import ClientError
        with pytest.raises(ClientError) as err:
            via_proxy.run_instances(ImageId=moto.any_image(), MinCount=1, MaxCount=1,
                                    InstanceType="p2.xlarge", SubnetId=subnet)
        assert err.value.response["Error"]["Code"] == "InsufficientInstanceCapacity"
        assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
        # Every attempt (botocore retries a 500) was seen and faulted.
        attempts = proxy.count("RunInstances")
        assert attempts >= 1 and proxy.faulted("RunInstances") == attempts
        _launch(via_proxy, moto.any_image(), subnet, instance_type="g4dn.xlarge")
        assert proxy.count("RunInstances") == attempts + 1
        assert proxy.faulted("RunInstances") == attempts


def test_fault_proxy_control_api_and_document_shape(moto):
    with h.FaultProxy(moto.url) as proxy:
        port = urllib.parse.urlsplit(proxy.url).port
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        rule = {"action": "DescribeInstances", **h.THROTTLED, "times": 1}
        conn.request("POST", "/_fault/rules", body=json.dumps(rule))
        assert conn.getresponse().read() == b"{}"
        conn.request("POST", "/", body="Action=DescribeInstances&Version=2016-11-15",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        resp = conn.getresponse()
        body = resp.read().decode()
        assert resp.status == 503
        assert "<Response><Errors><Error><Code>RequestLimitExceeded</Code>" in body
        assert "<RequestID>" in body
        conn.request("GET", "/_fault/counts")
        counts = json.loads(conn.getresponse().read())
        assert counts == {"seen": {"DescribeInstances": 1}, "faulted": {"DescribeInstances": 1}}


def test_iam_enforcement_refuses_unknown_keys_and_missing_permissions():
    from botocore.exceptions import ClientError
    with h.Moto(enforce_auth=True) as moto:
        moto.client().describe_instances()  # the admin keys work
        alice = moto.make_user("alice", ["ec2:Describe*"])
        moto.client(keys=alice).describe_instances()
        with pytest.raises(ClientError) as err:
            moto.client(keys=alice).run_instances(ImageId=moto.any_image(), MinCount=1, MaxCount=1)
        assert err.value.response["Error"]["Code"] == "AccessDenied"
        assert "ec2:RunInstances" in err.value.response["Error"]["Message"]
        with pytest.raises(ClientError) as err:
            moto.client(keys=("AKIDUNKNOWN", "nope")).describe_instances()
        assert err.value.response["Error"]["Code"] == "AuthFailure"


def _imds_get(url, path, token=None):
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    headers = {"X-aws-ec2-metadata-token": token} if token else {}
    conn.request("GET", "/latest/" + path, headers=headers)
    resp = conn.getresponse()
    return resp.status, resp.read().decode()


def _imds_token(url):
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
    conn.request("PUT", "/latest/api/token", headers={"X-aws-ec2-metadata-token-ttl-seconds": "60"})
    return conn.getresponse().read().decode()


@pytest.mark.skipif(h.metadata_mock_skip_reason() is not None,
                    reason=str(h.metadata_mock_skip_reason()))
def test_metadata_mock_imdsv2_only_and_spot_notice_after_delay():
    imds = h.MetadataMock(imdsv2_only=True, spot_terminate_after=3)
    started = time.monotonic()  # the mock counts the delay from its own start
    with imds:
        assert _imds_get(imds.url, "meta-data/instance-id")[0] == 401  # no token: refused
        token = _imds_token(imds.url)
        status, _ = _imds_get(imds.url, "meta-data/spot/instance-action", token)
        if time.monotonic() - started < 1.5:
            assert status == 404  # no notice before the delay
        h._wait(lambda: _imds_get(imds.url, "meta-data/spot/instance-action", token)[0] == 200,
                30, "the spot notice")
        notice = json.loads(_imds_get(imds.url, "meta-data/spot/instance-action", token)[1])
        assert notice["action"] == "terminate"
        # The mock counts the delay in whole seconds from its start: up to 1 s early.
        assert time.monotonic() - started >= 2
        status, roles = _imds_get(imds.url, "meta-data/iam/security-credentials/", token)
        assert status == 200 and roles.strip()
