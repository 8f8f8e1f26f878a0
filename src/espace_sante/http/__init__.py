"""HTTP shared by the API and the portals: what both surfaces answer the same way."""
