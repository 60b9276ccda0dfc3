"""Networks: the multi-stage ResNet backbone, the BYOL family's MLP and online/EMA-target pair, necks and heads."""
