"""dciodvfy's messages in a report: values (which can be identifying) dropped, attribute names kept."""

from wsianon.verify.dicom.validator import _parse_dciodvfy

OUT = b"""Warning - Value dubious for this VR - (0x0010,0x0010) PN Patient's Name  PN [1] = <DOE^JOHN> - Retired form
VLWholeSlideMicroscopyImage
Error - Unrecognized enumerated value <0x6> for value 1 of attribute <Number of Frames>
Error - Value invalid for this VR - (0x0008,0x1030) LO Study Description  LO [1] = <JOHN DOE 1234> - Character invalid
"""


def test_errors_only_values_dropped_attribute_names_kept():
    errs = _parse_dciodvfy(OUT)
    assert errs == [
        # a message ends at its first value (where a value ends cannot be told: red team stop 39)
        "Error - Unrecognized enumerated value <>",
        "Error - Value invalid for this VR - (0x0008,0x1030) LO Study Description  LO  = <>",
    ]
    assert not any("DOE" in e or "0x6" in e for e in errs)
