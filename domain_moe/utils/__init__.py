"""Small utilities shared by all subpackages."""
