import Docker from 'dockerode'

/**
 * The one place that decides how to reach the engine: dockerode honours DOCKER_HOST (unix socket,
 * tcp://, with DOCKER_TLS_VERIFY/DOCKER_CERT_PATH) and otherwise uses /var/run/docker.sock.
 */
export function createDockerClient(): Docker {
  return new Docker()
}
