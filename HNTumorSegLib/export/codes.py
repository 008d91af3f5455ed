"""The coded meaning and colour of each label: one definition for Slicer segments, DICOM SEG and RTSTRUCT.

Codes checked against DICOM PS3.16 as shipped in pydicom 3.0's code dictionary:

* category SCT 49755003 "Morphologically Abnormal Structure" (CID 7150);
* type SCT 372087000 "Neoplasm, Primary" (GTVp) and SCT 14799000 "Neoplasm, Secondary" (GTVn)
  (CID 7159 Lesion Segmentation Type; 372087000 replaced the retired 86049000, still
  recognised when reading);
* anatomic region SCT 774007 "Head and Neck" (CID 4031 Common Anatomic Region) for both.

Radiotherapy codes (choice): PS3.16 CID 9534 "Radiotherapy Target" has DCM 130052 "GTV Primary"
and DCM 130051 "GTV Nodal". They are written in the RTSTRUCT (``RTROIIdentificationCodeSequence``
of each RT ROI Observation, beside ``RTROIInterpretedType`` GTV), which is what planning systems
read. The SEG keeps the SNOMED lesion types above and does NOT add the RT codes: a SEG segment
has exactly one ``SegmentedPropertyTypeCodeSequence``, and Slicer's terminology, dcmqi, OHIF and
the challenges' tooling match segments by these SNOMED codes; putting the RT code there would
break that matching, and a modifier would misuse the attribute.

Colours (RGB 0..255): GTVp a warm red, GTVn a blue-green (told apart with red-green colour
blindness). ``HNTumorSeg/Resources/SegmentationCategoryTypeModifier-HNTumorSeg.term.json`` carries
the same codes and colours
(a test checks it).

Example:
    >>> TYPES[1]
    ('SCT', '372087000', 'Neoplasm, Primary')
"""

from __future__ import annotations

# (coding scheme designator, code value, code meaning)
CATEGORY = ("SCT", "49755003", "Morphologically Abnormal Structure")
TYPES = {1: ("SCT", "372087000", "Neoplasm, Primary"), 2: ("SCT", "14799000", "Neoplasm, Secondary")}
REGION = ("SCT", "774007", "Head and Neck")
# the standard's radiotherapy target codes (PS3.16 CID 9534), written in RTSTRUCT only (see above)
RT_TYPES = {1: ("DCM", "130052", "GTV Primary"), 2: ("DCM", "130051", "GTV Nodal")}
RETIRED_TYPES = {"86049000": 1}  # older "Neoplasm, Primary" code, accepted when reading
RGB = {1: (227, 66, 51), 2: (31, 158, 191)}


def type_code_to_label(code_value: str) -> int | None:
    """1 or 2 for a known type code value, else None."""
    for label, code in TYPES.items():
        if code[1] == code_value:
            return label
    return RETIRED_TYPES.get(code_value)
