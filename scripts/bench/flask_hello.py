"""The Flask benchmark app (scripts/bench-python): one route, the same body."""

from flask import Flask

app = Flask(__name__)


@app.get("/")
def hello() -> str:
    return "Hello from uwire!\n"


application = app
