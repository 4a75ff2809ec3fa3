/**
 * The cheapest possible proxy, for reference in the url(port) bench: bytes relayed between a client
 * connection and a new connection to the guest, with no HTTP parsing, no routing, nothing else. Run as
 * its own process (as the emulator is). Whatever it costs, every proxy on this machine costs at least that.
 * Usage: node bench/tcp-relay.ts <guest address> <guest port>; prints the port it listens on (loopback).
 */
import { connect, createServer } from 'node:net'

const [address = '', portText = ''] = process.argv.slice(2)
const server = createServer((client) => {
  client.setNoDelay(true)
  const guest = connect({ host: address, port: Number(portText), noDelay: true })
  client.pipe(guest)
  guest.pipe(client)
  const close = () => {
    client.destroy()
    guest.destroy()
  }
  client.on('error', close)
  guest.on('error', close)
  client.on('close', close)
  guest.on('close', close)
})
server.listen(0, '127.0.0.1', () => {
  const at = server.address()
  if (at && typeof at === 'object') console.log(at.port)
})
