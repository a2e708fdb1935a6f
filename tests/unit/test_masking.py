from orchestrator.masking import MASK, mask


def test_secrets_are_masked_at_any_depth_and_others_kept():
    data = {"password": "p", "keypairName": "kp", "nested": [{"apiKey": "k", "AccessKey": "a", "x": 1}],
            "Properties": {"Password": "LPP$o3P8", "ImageId": "ami"}, "token": "", "secretKey": None}
    out = mask(data)
    assert out["password"] == MASK
    assert out["keypairName"] == "kp"
    assert out["nested"][0] == {"apiKey": MASK, "AccessKey": MASK, "x": 1}
    assert out["Properties"] == {"Password": MASK, "ImageId": "ami"}
    assert out["token"] == "" and out["secretKey"] is None  # nothing to hide
    assert data["password"] == "p"  # a copy, the original untouched
