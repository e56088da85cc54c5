"""Loss-landscape study of an MLP and a CNN on Fashion-MNIST."""

from landscape.errors import StudyError

__all__ = ["StudyError"]
