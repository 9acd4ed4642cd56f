"""`coursehub render kubernetes` and `coursehub course image`: parse, call, print."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from coursehub.errors import CoursehubError
from coursehub.settings import Course, Settings
from coursehub.settings.yamlfile import find_config, load_settings


def load(ctx: click.Context) -> Settings:
    """The settings in use, found the way the main command finds them (-c, env, ./, built-in)."""
    root = ctx.find_root().obj
    explicit = root[0] if isinstance(root, tuple) else None
    return load_settings(find_config(explicit))


@click.group()
def render() -> None:
    """Render coursehub.yaml into another deployment's configuration."""


@render.command("kubernetes")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Write the values here (default: standard output).",
)
@click.pass_context
def render_kubernetes(ctx: click.Context, output: Path | None) -> None:
    """Values for the Zero to JupyterHub chart: helm upgrade --install -f values.yaml.

    Courses without kubernetes.image are looked up in kubernetes.image_registry
    (their repos are cloned to hash their environment). Settings that do not
    carry over to Kubernetes are listed on standard error.
    """
    from coursehub.courses.images import resolve_images
    from coursehub.kubernetes.values import build_values, render_notices, values_yaml

    try:
        settings = load(ctx)
        images = resolve_images(
            settings,
            lambda course: click.echo(
                f"Hashing the environment of course '{course.name}' ({course.repo})…", err=True
            ),
        )
        text = values_yaml(build_values(settings, images))
    except CoursehubError as exc:
        raise click.ClickException(str(exc)) from exc
    for notice in render_notices(settings):
        click.secho(f"notice: {notice}", fg="yellow", err=True)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(
            f"Wrote {output}: helm upgrade --install coursehub jupyterhub/jupyterhub --values {output}",
            err=True,
        )


@click.command("image")
@click.argument("course_name", metavar="COURSE")
@click.option(
    "--push",
    "registry",
    metavar="REGISTRY",
    help="Build as REGISTRY/<course>:<tag> and push it (default registry: "
    "kubernetes.image_registry, without pushing).",
)
@click.pass_context
def image(ctx: click.Context, course_name: str, registry: str | None) -> None:
    """Build COURSE's image with repo2docker; its tag is the hash of its environment."""
    from coursehub.courses.images import build_image

    try:
        settings = load(ctx)
        course = find_course(settings, course_name)
        target = registry or settings.kubernetes.image_registry
        if not target:
            raise CoursehubError(
                "no registry: pass --push REGISTRY or set kubernetes.image_registry in coursehub.yaml"
            )
        result = build_image(course, target, push=registry is not None)
    except CoursehubError as exc:
        raise click.ClickException(str(exc)) from exc
    if not result.built:
        click.secho(f"Not built: {result.reason}. The command that would build it:", err=True, fg="yellow")
        click.echo(shlex.join(result.command))
        ctx.exit(1)
    click.echo(result.image)


def find_course(settings: Settings, name: str) -> Course:
    """The course called `name`, or an error listing the courses there are."""
    for course in settings.courses:
        if course.name == name:
            return course
    names = ", ".join(c.name for c in settings.courses) or "none"
    raise CoursehubError(f"no course '{name}' in coursehub.yaml (courses: {names})")
