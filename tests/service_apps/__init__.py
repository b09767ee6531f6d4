"""Small web applications the service tests run under real servers."""
