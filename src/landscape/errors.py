"""The one exception type for errors a user can cause and fix."""


class StudyError(Exception):
    """A user-fixable problem: bad params, missing data, a bad checkpoint.

    The message says what is wrong and how to fix it. Stage entry points turn
    it into a clean non-zero exit without a traceback.
    """
