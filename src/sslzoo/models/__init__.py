"""Networks: the multi-stage ResNet backbone, necks and heads."""
