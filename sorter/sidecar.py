"""XMP sidecars: the species as keywords that Lightroom, darktable and digiKam read.

    dc:subject               Species
    lr:hierarchicalSubject   Birds|Species
    digiKam:TagsList         Birds/Species

`new_sidecar` writes a fresh one; `merge_sidecar` adds our keywords to an existing one and keeps all of
its content (other keywords, ratings, develop settings). Merging is idempotent: a sidecar that already
carries the keywords comes back byte for byte. A sidecar that is not well-formed XMP raises
SidecarError and is left untouched. These functions only compute bytes; `move.put` writes them.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from io import BytesIO
from html import escape

NS = {
    "x": "adobe:ns:meta/",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
    "dc": "http://purl.org/dc/elements/1.1/",
    "lr": "http://ns.adobe.com/lightroom/1.0/",
    "digiKam": "http://www.digikam.org/ns/1.0/",
}
ROOT_TOPIC = "Birds"
# (property, container, keyword for a species)
PROPERTIES = (
    ("dc", "subject", "Bag", lambda s: s),
    ("lr", "hierarchicalSubject", "Bag", lambda s: f"{ROOT_TOPIC}|{s}"),
    ("digiKam", "TagsList", "Seq", lambda s: f"{ROOT_TOPIC}/{s}"),
)
PROLOG = re.compile(rb"^(?:\s*(?:<\?(?:(?!\?>).)*\?>|<!--(?:(?!-->).)*-->))*\s*", re.S)


class SidecarError(Exception):
    """An existing sidecar we must not touch; `str(e)` is a one-line reason."""


def _q(prefix: str, name: str) -> str:
    return f"{{{NS[prefix]}}}{name}"


def new_sidecar(species: str) -> bytes:
    props = []
    for prefix, name, container, keyword in PROPERTIES:
        props.append(f"   <{prefix}:{name}>\n    <rdf:{container}>\n"
                     f"     <rdf:li>{escape(keyword(species))}</rdf:li>\n    </rdf:{container}>\n"
                     f"   </{prefix}:{name}>\n")
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>\n'
        '<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="birdsort">\n'
        f' <rdf:RDF xmlns:rdf="{NS["rdf"]}">\n'
        f'  <rdf:Description rdf:about=""\n    xmlns:dc="{NS["dc"]}"\n    xmlns:lr="{NS["lr"]}"\n'
        f'    xmlns:digiKam="{NS["digiKam"]}">\n'
        + "".join(props)
        + "  </rdf:Description>\n </rdf:RDF>\n</x:xmpmeta>\n"
        '<?xpacket end="w"?>\n'
    ).encode("utf-8")


def _namespaces(data: bytes) -> list[tuple[str, str]]:
    return [ns for _, ns in ET.iterparse(BytesIO(data), events=("start-ns",))]


def merge_sidecar(data: bytes, species: str) -> bytes:
    """`data` (an existing sidecar) with our keywords added; `data` itself when nothing is missing."""
    if b"<!DOCTYPE" in data or b"<!ENTITY" in data:
        raise SidecarError("sidecar declares a DOCTYPE/ENTITY; left untouched")
    try:
        declared = _namespaces(data)
        parser = ET.XMLParser(target=ET.TreeBuilder(insert_comments=True, insert_pis=True))
        root = ET.fromstring(data, parser=parser)  # comments and processing instructions kept
    except ET.ParseError as e:
        raise SidecarError(f"sidecar is not well-formed XML ({e}); left untouched") from None
    rdf = root if root.tag == _q("rdf", "RDF") else root.find(f".//{_q('rdf', 'RDF')}")
    if rdf is None:
        raise SidecarError("sidecar has no rdf:RDF element; left untouched")
    descriptions = rdf.findall(_q("rdf", "Description"))
    changed = False
    for prefix, name, container, keyword in PROPERTIES:
        word = keyword(species)
        prop = next((p for d in descriptions for p in d.findall(_q(prefix, name))), None)
        if prop is None:
            if not descriptions:
                descriptions = [ET.SubElement(rdf, _q("rdf", "Description"), {_q("rdf", "about"): ""})]
            prop = ET.SubElement(descriptions[0], _q(prefix, name))
            ET.SubElement(prop, _q("rdf", container))
        bag = next((c for c in prop if c.tag in (_q("rdf", "Bag"), _q("rdf", "Seq"), _q("rdf", "Alt"))), None)
        if bag is None:
            raise SidecarError(f"sidecar's {prefix}:{name} is not an RDF list; left untouched")
        if any((li.text or "") == word for li in bag.findall(_q("rdf", "li"))):
            continue
        ET.SubElement(bag, _q("rdf", "li")).text = word
        changed = True
    if not changed:
        return data
    for prefix, uri in declared + [(p, u) for p, u in NS.items()]:
        if prefix and not re.fullmatch(r"ns\d+", prefix):
            try:
                ET.register_namespace(prefix, uri)
            except ValueError:
                pass
    body = ET.tostring(root, encoding="unicode").encode("utf-8")
    head = PROLOG.match(data).group(0)      # xpacket header, comments: kept as they were
    close = data.rfind(b"</")
    tail = data[data.find(b">", close) + 1:] if close >= 0 else b"\n"
    return head + body + (tail if tail.strip() else b"\n")


def keywords(data: bytes) -> dict[str, list[str]]:
    """The keywords a sidecar carries, per property (for tests and `sorter status`)."""
    root = ET.fromstring(data)
    out = {}
    for prefix, name, _, _ in PROPERTIES:
        out[f"{prefix}:{name}"] = [li.text or "" for p in root.iter(_q(prefix, name)) for li in p.iter(_q("rdf", "li"))]
    return out
