"""moto's EC2 server on loopback for the aws provider's tests, a VPC
127.1.0.0/16 with a subnet 127.1.1.0/24 (its instances get loopback
addresses), and a small proxy in front of it that answers RunInstances with
chosen EC2 errors (moto has no capacity or permission errors). Everything
listens on 127.0.0.1 on free ports and is stopped by stop()."""
import http.client
import http.server
import importlib.util
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "AKIDTRAINYARDTEST", "AWS_SECRET_ACCESS_KEY": "trainyard-test-secret",
               "AWS_EC2_METADATA_DISABLED": "true"}


def skip_reason():
    for mod in ("moto", "boto3", "flask"):
        if importlib.util.find_spec(mod) is None:
            return f"{mod} is not installed in this Python (scripts/setup.sh installs moto[server])"
    return None


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class _Proxy(http.server.ThreadingHTTPServer):
    daemon_threads = True


class MotoEc2:
    def __init__(self, folder):
        self.folder = folder
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.faults = {}  # instance type or "*" -> (status, code, message)
        self.proc = None
        self.proxy = None

    # ------------------------------------------------------------ lifecycle

    def start(self):
        env = dict(os.environ, MOTO_ENABLE_AMI_VALIDATION="true")
        self.log = open(self.folder / "moto.log", "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     env=env, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError("moto did not start: " + (self.folder / "moto.log").read_text()[-2000:])
                time.sleep(0.1)
        ec2 = self.client()
        self.image_id = next(i["ImageId"] for i in ec2.describe_images(Owners=["amazon"])["Images"]
                             if i.get("Platform") != "windows")
        vpc = ec2.create_vpc(CidrBlock="127.1.0.0/16")["Vpc"]["VpcId"]
        self.subnet_id = ec2.create_subnet(VpcId=vpc, CidrBlock="127.1.1.0/24")["Subnet"]["SubnetId"]
        self._start_proxy()
        return self

    def stop(self):
        if self.proxy:
            self.proxy.shutdown()
            self.proxy.server_close()
        if self.proc:
            self.proc.terminate()
            self.proc.wait(10)
            self.log.close()

    def credentials_env(self):
        return dict(CREDENTIALS)

    def client(self):
        import boto3
        return boto3.client("ec2", region_name="us-east-1", endpoint_url=self.url,
                            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])

    # ------------------------------------------------------------ EC2's view

    def instances(self, filters):
        flt = [{"Name": k, "Values": [v]} for k, v in filters.items()]
        out = []
        for page in self.client().get_paginator("describe_instances").paginate(Filters=flt):
            for res in page["Reservations"]:
                out.extend(res["Instances"])
        return out

    def state(self, ec2_id):
        res = self.client().describe_instances(InstanceIds=[ec2_id])["Reservations"]
        return res[0]["Instances"][0]["State"]["Name"]

    def run_tagged(self, tags):
        """An instance made outside Trainyard, with `tags`; its EC2 id."""
        r = self.client().run_instances(
            ImageId=self.image_id, InstanceType="t3.micro", MinCount=1, MaxCount=1, SubnetId=self.subnet_id,
            TagSpecifications=[{"ResourceType": "instance",
                                "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}])
        return r["Instances"][0]["InstanceId"]

    # ------------------------------------------------------------ faults

    def fail_run_instances(self, instance_type, code, message, status=500):
        """RunInstances of `instance_type` ("*": any) answers EC2's error."""
        self.faults[instance_type] = (status, code, message)

    def reset_faults(self):
        self.faults.clear()

    @property
    def proxy_url(self):
        return f"http://127.0.0.1:{self.proxy.server_address[1]}"

    def _start_proxy(self):
        moto = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                form = urllib.parse.parse_qs(body.decode())
                if form.get("Action") == ["RunInstances"]:
                    itype = form.get("InstanceType", [""])[0]
                    fault = moto.faults.get(itype) or moto.faults.get("*")
                    if fault:
                        return self._error(*fault)
                self._forward(body)

            def _error(self, status, code, message):
                xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>{code}</Code>'
                       f'<Message>{message}</Message></Error></Errors>'
                       f'<RequestID>proxy-0000</RequestID></Response>').encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(xml)))
                self.end_headers()
                self.wfile.write(xml)

            def _forward(self, body):
                conn = http.client.HTTPConnection("127.0.0.1", moto.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                headers["Host"] = self.headers.get("Host", "")
                conn.request("POST", self.path, body, headers)
                r = conn.getresponse()
                data = r.read()
                self.send_response(r.status)
                for k, v in r.getheaders():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

        self.proxy = _Proxy(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.proxy.serve_forever, daemon=True).start()
