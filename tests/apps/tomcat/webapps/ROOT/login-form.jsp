<%@ page contentType="text/html; charset=UTF-8" session="true" %><%
  // Starts the app's session (Set-Cookie: JSESSIONID) like any legacy login page.
  session.setAttribute("visited", Boolean.TRUE);
%><form method="post" action="<%= response.encodeURL("/login") %>">
<input name="user"><input name="password" type="password"><button>log in</button></form>
