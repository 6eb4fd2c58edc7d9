"""`raftkv demo`: a real local cluster plus a web page that shows consensus happening.

add_parser(subparsers) registers the subcommand; run(args) runs it (see command.py).
The pieces: supervisor.py (node processes), streams.py (each node's /v1/events), broker.py
(one merged stream for the browsers), control.py (what the buttons do), webapp.py (HTTP).
"""

from raftkv.demo.command import DemoOptions, add_parser, run, serve_demo

__all__ = ["DemoOptions", "add_parser", "run", "serve_demo"]
