<%@ page contentType="text/plain; charset=UTF-8" session="true" %><%
  // The vulnerability: the user is stored in the existing session, whose ID is not changed
  // (no request.changeSessionId()).
  if ("POST".equals(request.getMethod()) && "victim".equals(request.getParameter("user"))
      && "victim-pass".equals(request.getParameter("password"))) {
    session.setAttribute("user", "victim");
    out.print("logged in as victim\n");
  } else {
    response.setStatus(403);
    out.print("bad credentials\n");
  }
%>
