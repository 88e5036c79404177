import torch

from edgeaffect.models.backbones import MobileNetV2Features, resnet18_trunk, resnet50_trunk
from edgeaffect.models.registry import count_parameters


def test_parameter_counts_match_the_published_networks():
    # torchvision: resnet50 23,508,032 without fc; resnet18 11,176,512 without fc; mobilenet_v2 features 2,223,872
    assert count_parameters(resnet50_trunk()) == 23_508_032
    assert count_parameters(resnet18_trunk()) == 11_176_512
    assert count_parameters(MobileNetV2Features()) == 2_223_872


def test_output_dims():
    x = torch.zeros(2, 3, 64, 64)
    assert MobileNetV2Features().eval()(x).shape == (2, 1280)
    assert resnet18_trunk(width=16).eval()(x).shape == (2, 128)
    assert resnet18_trunk(in_channels=1, width=16).eval()(torch.zeros(2, 1, 64, 40)).shape == (2, 128)
