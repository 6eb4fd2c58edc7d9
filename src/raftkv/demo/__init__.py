"""The live consensus demo: a real local cluster plus a web page that shows consensus happening.

serve_demo(options, out) runs it (runner.py); `raftkv demo` is its command (raftkv.cli.demo).
The pieces: supervisor.py (node processes), streams.py (each node's /v1/events), broker.py
(one merged stream for the browsers), control.py (what the buttons do), webapp.py (HTTP).
"""

from raftkv.demo.runner import DemoOptions, serve_demo

__all__ = ["DemoOptions", "serve_demo"]
