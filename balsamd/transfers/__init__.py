"""Data transfers: the site's locations and the files jobs bring in and send out."""
