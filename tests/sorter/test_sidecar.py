import pytest

from sorter.sidecar import SidecarError, keywords, merge_sidecar, new_sidecar

LIGHTROOM = b"""<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="Adobe XMP Core 7.0">
 <!-- develop settings below -->
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about="" xmlns:crs="http://ns.adobe.com/camera-raw-settings/1.0/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/" crs:Exposure2012="+0.35">
   <lr:hierarchicalSubject><rdf:Bag><rdf:li>Places|Marsh</rdf:li></rdf:Bag></lr:hierarchicalSubject>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
<?xpacket end="w"?>
"""


def test_new_sidecar_carries_the_three_keyword_forms():
    kw = keywords(new_sidecar("Ivory_Gull"))
    assert kw == {"dc:subject": ["Ivory_Gull"], "lr:hierarchicalSubject": ["Birds|Ivory_Gull"],
                  "digiKam:TagsList": ["Birds/Ivory_Gull"]}


def test_merge_keeps_everything_and_is_idempotent():
    merged = merge_sidecar(LIGHTROOM, "Ivory_Gull")
    kw = keywords(merged)
    assert kw["lr:hierarchicalSubject"] == ["Places|Marsh", "Birds|Ivory_Gull"]
    assert kw["dc:subject"] == ["Ivory_Gull"] and kw["digiKam:TagsList"] == ["Birds/Ivory_Gull"]
    assert b'crs:Exposure2012="+0.35"' in merged            # other content and its prefixes kept
    assert b"<!-- develop settings below -->" in merged
    assert merged.startswith(LIGHTROOM[:LIGHTROOM.index(b"<x:xmpmeta")])  # xpacket header as it was
    assert merged.rstrip().endswith(b'<?xpacket end="w"?>')
    assert merge_sidecar(merged, "Ivory_Gull") == merged    # second time: byte for byte the same


@pytest.mark.parametrize("bad", [b"<x:xmpmeta", b"not xml at all", b"<a><b></a>",
                                 b'<!DOCTYPE x [<!ENTITY e "boom">]><x>&e;</x>', b"<root/>"])
def test_malformed_sidecars_are_refused(bad):
    with pytest.raises(SidecarError):
        merge_sidecar(bad, "Ivory_Gull")
