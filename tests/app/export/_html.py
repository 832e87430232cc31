"""A small HTML checker on top of html.parser: tags, attributes, text, and well-formedness."""

from __future__ import annotations

import base64
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

VOID = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
}


class PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.doctype = None

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> (open: {self.stack[-3:]})")
            return
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def parse(path: Path) -> PageParser:
    p = PageParser()
    p.feed(path.read_text(encoding="utf-8"))
    p.close()
    assert p.doctype and p.doctype.lower() == "doctype html"
    assert not p.errors, p.errors
    assert not p.stack, f"unclosed tags: {p.stack}"
    return p


def references(page: PageParser) -> list[str]:
    """Every src/href/data-file value that is not a data URI or an in-page anchor."""
    refs = []
    for _tag, attrs in page.tags:
        for key in ("src", "href", "data-file", "poster"):
            v = attrs.get(key)
            if v and not v.startswith("data:") and not v.startswith("#"):
                refs.append(unquote(v))
    return refs


def data_uris(page: PageParser) -> list[tuple[str, str, bytes]]:
    """``(tag, mime, payload)`` for every data URI in a src attribute."""
    out = []
    for tag, attrs in page.tags:
        v = attrs.get("src") or ""
        if v.startswith("data:"):
            head, b64 = v.split(",", 1)
            out.append((tag, head[5:].split(";")[0], base64.b64decode(b64)))
    return out
