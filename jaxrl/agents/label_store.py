"""Deprecated: the label store moved next to its only user, to
:mod:`jaxrl.feedback.label_store`. Importing this name gives that module (the
same object, so its warnings and state are shared) and will stop working in
a later release."""

import sys
import warnings

from jaxrl.feedback import label_store as _moved

warnings.warn("jaxrl.agents.label_store moved to jaxrl.feedback.label_store",
              DeprecationWarning, stacklevel=2)
sys.modules[__name__] = _moved
