"""Two small HTTP services and a client, for `make demo` and the README: no tracing code
anywhere — run it under `spanshim run` (or LD_PRELOAD=libspanshim.so) and each request is
one trace across the processes.

    python3 orders_demo.py              the client: starts both services, sends requests,
                                        stops the services, exits 0
    python3 orders_demo.py inventory    GET /stock/ID -> 200 "ID:7" (ID 13: 503)
    python3 orders_demo.py orders URL   GET /orders/ID -> reads the stock from URL with
                                        urllib (and the order from PostgreSQL with psycopg2
                                        when PGDEMO_* is set and psycopg2 is importable)

Services print their port on stdout and exit 0 on SIGTERM (so their spans are flushed)."""
import http.server
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request


def serve(handler):
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    print(srv.server_address[1], flush=True)
    srv.serve_forever()


class Quiet(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, body):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Inventory(Quiet):
    def do_GET(self):
        item = self.path.rsplit("/", 1)[-1]
        self.reply(503 if item == "13" else 200, ("%s:7" % item).encode())


def db_order(item):
    """The order's row from PostgreSQL, or None when there is no database to ask."""
    if "PGDEMO_HOST" not in os.environ:
        return None
    try:
        import psycopg2
    except ImportError:
        return None
    conn = psycopg2.connect(host=os.environ["PGDEMO_HOST"], port=os.environ["PGDEMO_PORT"],
                            user=os.environ["PGDEMO_USER"], dbname=os.environ["PGDEMO_USER"],
                            password=os.environ.get("PGDEMO_PASSWORD", ""))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT %s::int AS id, 'widget' AS name", (int(item),))
            return cur.fetchone()
    finally:
        conn.close()


class Orders(Quiet):
    stock_url = ""

    def do_GET(self):
        item = self.path.rsplit("/", 1)[-1]
        row = db_order(item)
        try:
            with urllib.request.urlopen(self.stock_url + "/stock/" + item, timeout=5) as r:
                stock = r.read().decode()
            self.reply(200, ("order %s %s stock %s" % (item, row, stock)).encode())
        except urllib.error.HTTPError as e:
            self.reply(502, ("inventory said %d" % e.code).encode())


def start(*args):
    env = dict(os.environ, OTEL_SERVICE_NAME=args[0])  # how the waterfall names them
    p = subprocess.Popen([sys.executable, __file__] + list(args), stdout=subprocess.PIPE,
                         env=env)
    return p, int(p.stdout.readline())


def client():
    inv, inv_port = start("inventory")
    orders, orders_port = start("orders", "http://127.0.0.1:%d" % inv_port)
    status = 0
    try:
        for item in ("42", "13"):
            url = "http://127.0.0.1:%d/orders/%s" % (orders_port, item)
            try:
                with urllib.request.urlopen(url, timeout=10) as r:
                    print("GET /orders/%s -> %d %s" % (item, r.status, r.read().decode()))
            except urllib.error.HTTPError as e:
                print("GET /orders/%s -> %d %s" % (item, e.code, e.read().decode()))
    except Exception as e:  # the demo says what went wrong, and fails
        print("orders_demo: %s" % e, file=sys.stderr)
        status = 1
    for p in (orders, inv):
        p.terminate()
        if p.wait(timeout=10) != 0:
            status = 1
    return status


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "inventory":
        serve(Inventory)
    elif len(sys.argv) > 2 and sys.argv[1] == "orders":
        Orders.stock_url = sys.argv[2]
        serve(Orders)
    else:
        sys.exit(client())
