"""Shared fixtures (a 127.0.0.1 HTTP server for downloads); GPU tests are skipped (with the
reason) where no CUDA device is usable."""
import http.server
import threading

import numpy
import pytest


def _gpu_reason():
    try:
        import cupy
        cupy.cuda.runtime.getDeviceCount()
        return None
    except Exception as e:  # ImportError, or the driver's own error
        return f"no usable CUDA device ({type(e).__name__}: {e})"


def pytest_collection_modifyitems(config, items):
    reason = None
    for item in items:
        if "gpu" in item.keywords:
            reason = reason or _gpu_reason()
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(params=["numpy", "jit"])
def passes(request, monkeypatch):
    """A test twice: on the NumPy passes (the reference) and on numba's compiled loops."""
    if request.param == "jit":
        from minigan.functions import jit
        if jit.numba is None:
            pytest.skip("numba is not installed (the minigan[jit] extra)")
        monkeypatch.setenv("MINIGAN_JIT", "1")
    else:
        monkeypatch.setenv("MINIGAN_JIT", "0")
    return request.param


@pytest.fixture
def rng():
    return numpy.random.RandomState(0)


# -- a local HTTP server for the download tests ---------------------------------------------------

class Handler(http.server.BaseHTTPRequestHandler):
    """Serves server.routes[path] = (body, extra): Content-Length says len(body) + extra."""

    def do_GET(self):
        self.server.hits.append(self.path)
        if self.path not in self.server.routes:
            self.send_error(404, "Not Found")
            return
        body, extra = self.server.routes[self.path]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body) + extra))
        self.end_headers()
        self.wfile.write(body)  # then HTTP/1.0 closes: a short body is a truncated download

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def http_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def server(http_server):
    http_server.routes, http_server.hits = {}, []
    return http_server
