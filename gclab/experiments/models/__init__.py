"""Small CPU-friendly backbones for the experiments."""

from .resnet import BLOCKS, BasicBlock, SmallResNet, make_block, receptive_field

__all__ = ["BLOCKS", "BasicBlock", "SmallResNet", "make_block", "receptive_field"]
