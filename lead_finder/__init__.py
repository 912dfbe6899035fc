"""lead_finder: find email addresses for sales leads without paying twice."""

from .errors import LeadFinderError
from .models import Email, Mode, Result, Source, Status

__version__ = "0.1.0"

__all__ = ["Email", "LeadFinderError", "Mode", "Result", "Source", "Status", "__version__"]
