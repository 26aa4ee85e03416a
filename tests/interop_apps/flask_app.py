"""A Flask app for the interop tests: GET /hello?name=..., POST /form."""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.get("/hello")
def hello():
    return "hello %s\n" % request.args.get("name", "world")


@app.post("/form")
def form():
    return jsonify(form=request.form.to_dict(flat=False),
                   args=request.args.to_dict(flat=False),
                   path=request.path, content_length=request.content_length)


application = app
