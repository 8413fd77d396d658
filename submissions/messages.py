"""Problem messages shared by the fast structural check and the full validator."""

# Beyond this many problems in one file, the rest are counted, not listed.
MAX_PROBLEMS = 20

NO_SEED = (
    "not a parameter: a method's own randomness is seeded by the platform, the same for"
    " every submission, so that no submitter can choose a lucky seed"
)
